// QmpClient against a fake QMP server speaking the same line protocol as QEMU.
import { afterEach, describe, expect, it } from 'vitest'
import { createServer, type Server, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QmpClient, QmpError } from './qmp-client.js'

let server: Server | undefined
let dir: string | undefined
afterEach(() => {
  server?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

function fakeQemu(handle: (cmd: { execute: string; id: string; arguments?: Record<string, unknown> }, s: Socket) => void): string {
  dir = mkdtempSync(join(tmpdir(), 'vmesh-qmp-'))
  const path = join(dir, 'qmp.sock')
  server = createServer((s) => {
    s.write(JSON.stringify({ QMP: { version: {}, capabilities: [] } }) + '\n')
    let buf = ''
    s.on('data', (d) => {
      buf += d.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id: string }
        buf = buf.slice(nl + 1)
        if (cmd.execute === 'qmp_capabilities') s.write(JSON.stringify({ return: {}, id: cmd.id }) + '\n')
        else handle(cmd, s)
      }
    })
  }).listen(path)
  return path
}

describe('QmpClient', () => {
  it('matches replies to commands by id, out of order', async () => {
    const held: Array<() => void> = []
    const path = fakeQemu((c, s) => {
      const send = (): void => void s.write(JSON.stringify({ return: { name: c.execute }, id: c.id }) + '\n')
      if (c.execute === 'slow') held.push(send)
      else {
        send()
        held.forEach((f) => f())
      }
    })
    const q = await QmpClient.connect(path)
    const slow = q.execute<{ name: string }>('slow')
    const fast = await q.execute<{ name: string }>('fast')
    expect(fast.name).toBe('fast')
    expect((await slow).name).toBe('slow')
    q.close()
  })

  it('turns QMP errors into QmpError and enforces timeouts', async () => {
    const path = fakeQemu((c, s) => {
      if (c.execute === 'bad') s.write(JSON.stringify({ error: { class: 'GenericError', desc: 'Device nic9 not found' }, id: c.id }) + '\n')
    })
    const q = await QmpClient.connect(path)
    const err = await q.execute('bad').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QmpError)
    expect((err as Error).message).toBe('QMP bad failed: Device nic9 not found (GenericError)')
    await expect(q.execute('never', undefined, 100)).rejects.toThrow(/timed out after 100 ms/)
    q.close()
  })

  it('keeps events with QEMU timestamps and finds already-seen ones', async () => {
    const path = fakeQemu((c, s) => {
      s.write(JSON.stringify({ event: 'STOP', data: {}, timestamp: { seconds: 100, microseconds: 5000 } }) + '\n')
      s.write(JSON.stringify({ event: 'RESUME', data: {}, timestamp: { seconds: 100, microseconds: 17500 } }) + '\n')
      s.write(JSON.stringify({ return: {}, id: c.id }) + '\n')
    })
    const q = await QmpClient.connect(path)
    const since = q.events.length
    await q.execute('stop')
    const stop = await q.waitEvent('STOP', () => true, 1000, since)
    const resume = await q.waitEvent('RESUME', () => true, 1000, since)
    expect(resume.timeMs - stop.timeMs).toBeCloseTo(12.5, 5)
    await expect(q.waitEvent('SHUTDOWN', () => true, 50)).rejects.toThrow(/SHUTDOWN/)
    q.close()
  })

  it('fails pending commands when QEMU goes away, and connect gives up on a missing socket', async () => {
    const path = fakeQemu((_c, s) => s.destroy())
    const q = await QmpClient.connect(path)
    await expect(q.execute('quit')).rejects.toThrow(/closed/)
    await expect(QmpClient.connect('/nonexistent/qmp.sock', { connectTimeoutMs: 100 })).rejects.toThrow(/cannot connect to QMP socket/)
  })
})
