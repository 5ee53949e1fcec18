// The protocol against a fake guest on a unix socket (the real guest is in test/hypervisor.e2e).
import { afterEach, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GuestChannel, parseHealth } from './guest-channel.js'

let server: Server | undefined
let dir: string | undefined
afterEach(() => {
  server?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

function fakeGuest(reply: (id: string, cmd: string, arg: string, raw: string) => string | undefined): string {
  dir = mkdtempSync(join(tmpdir(), 'vmesh-gc-'))
  const path = join(dir, 'ctl.sock')
  server = createServer((s) => {
    let buf = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => {
      buf += d
      let nl: number
      // Like the real guest: one connection, one request per line.
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [id, cmd, b64] = buf.slice(0, nl).split(' ')
        buf = buf.slice(nl + 1)
        const arg = b64 === '-' ? '' : Buffer.from(b64 ?? '', 'base64').toString()
        const out = reply(id!, cmd!, arg, b64 ?? '')
        if (out !== undefined) s.write(out)
      }
    })
  }).listen(path)
  return path
}
const enc = (s: string): string => Buffer.from(s).toString('base64')

describe('GuestChannel', () => {
  it('sends base64 arguments and decodes replies, skipping stale ones', async () => {
    const path = fakeGuest((id, cmd, arg) => cmd === 'ping' ? `${id} 0 ${enc('pong')}\n` : `old 0 ${enc('stale')}\n${id} 3 ${enc(`${cmd}:${arg}`)}\n`)
    await new Promise((r) => server!.once('listening', r))
    const r = await new GuestChannel(path).run('echo a b')
    expect(r).toEqual({ code: 3, output: 'run:echo a b' })
  })

  it('parses health and sets identity', async () => {
    const seen: string[] = []
    const path = fakeGuest((id, cmd, arg) => {
      seen.push(`${cmd} ${arg}`)
      if (cmd === 'ping') return `${id} 0 ${enc('pong')}\n`
      if (cmd === 'health') return `${id} 0 ${enc('name=n hostname=h counter=42 cpus=2 memkb=1000 uptime=3.5')}\n`
      return `${id} 0 ${enc('ok')}\n`
    })
    await new Promise((r) => server!.once('listening', r))
    const ch = new GuestChannel(path)
    expect(await ch.health()).toEqual({ name: 'n', hostname: 'h', counter: 42, cpus: 2, memKiB: 1000, uptimeS: 3.5 })
    await ch.setIdentity('vm-1', 'host-1')
    expect(seen).toContain('identity vm-1 host-1')
    await expect(ch.setIdentity('vm-1', 'bad host; rm -rf /')).rejects.toThrow(/invalid hostname/)
  })

  it('sends identity as plain words to a guest that says it takes them, and reads a plain answer', async () => {
    const lines: string[] = []
    const path = fakeGuest((id, cmd, _arg, raw) => {
      if (cmd === 'ping') return `${id} 0 ${enc('pong plain-args')}\n`
      lines.push(raw)
      return `${id} 0 =name=vm-1,hostname=host-1,mac=52:54:00:00:00:02\n`
    })
    await new Promise((r) => server!.once('listening', r))
    const ch = new GuestChannel(path)
    expect(await ch.setIdentity('vm-1', 'host-1', 5000, { from: '52:54:00:00:00:01', to: '52:54:00:00:00:02' })).toBe('52:54:00:00:00:02')
    ch.close()
    expect(lines).toEqual(['=vm-1,host-1,52:54:00:00:00:01,52:54:00:00:00:02'])
  })

  it('times out with a message that says what to check', async () => {
    const path = fakeGuest(() => undefined)
    await new Promise((r) => server!.once('listening', r))
    await expect(new GuestChannel(path).ping(200)).rejects.toThrow(/did not answer "ping" within 200 ms/)
  })

  it('keeps one connection, and pings first so a request is not lost while the guest reopens its port', async () => {
    let connections = 0
    let dropFirst = true
    const path = fakeGuest((id, cmd) => {
      // The guest drops what arrives right after a (re)connect.
      if (dropFirst) { dropFirst = false; return undefined }
      return cmd === 'ping' ? `${id} 0 ${enc('pong')}\n` : `${id} 0 ${enc(cmd)}\n`
    })
    server!.on('connection', () => { connections++ })
    await new Promise((r) => server!.once('listening', r))
    const ch = new GuestChannel(path)
    expect((await ch.run('a', 5000)).output).toBe('run')
    expect((await ch.run('b', 5000)).output).toBe('run')
    expect(connections).toBe(1)
    ch.close()
  })

  it('writes an unanswered request again under the same id: so a lost copy is made good and a slow answer to the first copy still counts', async () => {
    const identities: string[] = []
    let dropNext = true
    const path = fakeGuest((id, cmd) => {
      if (cmd === 'ping') return `${id} 0 ${enc('pong')}\n`
      identities.push(id)
      // The first copy is lost (the port was reopening); the second is answered.
      if (dropNext) { dropNext = false; return undefined }
      return `${id} 0 ${enc('mac=none')}\n`
    })
    await new Promise((r) => server!.once('listening', r))
    const ch = new GuestChannel(path)
    expect(await ch.setIdentity('vm-1', 'host-1', 5000, undefined, 50)).toBe('')
    expect(identities).toHaveLength(2)
    expect(identities[0]).toBe(identities[1])
    // Another channel (a clone's guest remembers its source's last id) never reuses an id.
    const other = new GuestChannel(path)
    await other.setIdentity('vm-2', 'host-2', 5000, undefined, 50)
    expect(identities[2]).not.toBe(identities[0])
    other.close()

    ch.close()
  })

  it('fails clearly when nothing listens', async () => {
    await expect(new GuestChannel('/nonexistent/ctl.sock').ping(200)).rejects.toThrow(/guest channel/)
  })

  it('rejects malformed health', () => {
    expect(() => parseHealth('name=x counter=abc')).toThrow(/counter/)
    expect(() => parseHealth('name=x counter= cpus=1 memkb=1 uptime=1')).toThrow(/counter/)
  })
})
