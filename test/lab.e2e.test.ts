// The lab itself: hosts reach each other, links are shaped to the rate, and down() leaves nothing.
// Needs root (network namespaces); skips visibly otherwise.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { Lab } from './lab.js'

const check = Lab.available()
if (!check.ok) console.warn(`lab.e2e: skipped: ${check.reason ?? ''}`)

const RATE_MBIT = 100
const PORT = 7301

// A TCP server that answers each connection with "ok <its address>" (reachability), or counts
// bytes and reports the rate seen by the receiver (throughput). Traffic stays inside the lab.
const ECHO_SERVER = `
const net = require('net')
net.createServer((s) => { s.end('ok ' + process.argv[1]) }).listen(${PORT}, process.argv[1], () => console.log('ready'))
`
const PROBE = `
const net = require('net')
const s = net.connect(${PORT}, process.argv[1])
let out = ''
s.on('data', (d) => { out += d })
s.on('end', () => { console.log(out); process.exit(0) })
s.on('error', (e) => { console.log('error ' + e.message); process.exit(1) })
setTimeout(() => { console.log('timeout'); process.exit(1) }, 5000)
`
const SINK = `
const net = require('net')
net.createServer((s) => {
  let bytes = 0, first = 0
  s.on('data', (d) => { if (first === 0) first = performance.now(); bytes += d.length })
  s.on('end', () => { console.log(JSON.stringify({ bytes, ms: performance.now() - first })); process.exit(0) })
}).listen(${PORT + 1}, process.argv[1], () => console.log('ready'))
`
const SOURCE = `
const net = require('net')
const total = Number(process.argv[2]) * 1024 * 1024
const buf = Buffer.alloc(256 * 1024, 7)
const s = net.connect(${PORT + 1}, process.argv[1], () => {
  let sent = 0
  const pump = () => {
    while (sent < total) {
      sent += buf.length
      if (!s.write(buf)) { s.once('drain', pump); return }
    }
    s.end()
  }
  pump()
})
`

function output (child: ChildProcess): { line: (pred: (l: string) => boolean) => Promise<string> } {
  let buffered = ''
  const waiters: Array<() => void> = []
  child.stdout?.on('data', (d: Buffer) => { buffered += d.toString(); for (const w of waiters.splice(0)) w() })
  return {
    async line (pred) {
      for (;;) {
        const found = buffered.split('\n').find(pred)
        if (found !== undefined) return found
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before printing the expected line; output: ${buffered}`)
        await new Promise<void>((resolve) => { waiters.push(resolve); child.once('exit', () => resolve()) })
      }
    }
  }
}

describe.skipIf(!check.ok)('lab (3 hosts at 100mbit)', () => {
  let lab: Lab | undefined

  beforeAll(async () => {
    lab = await Lab.up(3, `${RATE_MBIT}mbit`)
  })

  afterAll(async () => {
    await lab?.down()
  })

  it('gives each host its own address, and every host reaches every other', async () => {
    const l = lab as Lab
    expect(new Set([0, 1, 2].map((i) => l.addr(i))).size).toBe(3)
    const servers = [0, 1, 2].map((i) => l.exec(i, 'node', ['-e', ECHO_SERVER, l.addr(i)]))
    await Promise.all(servers.map(async (s) => await output(s).line((x) => x === 'ready')))
    for (const from of [0, 1, 2]) {
      for (const to of [0, 1, 2]) {
        if (from === to) continue
        const probe = l.exec(from, 'node', ['-e', PROBE, l.addr(to)])
        expect(await output(probe).line((x) => x.length > 0)).toBe(`ok ${l.addr(to)}`)
      }
    }
    for (const s of servers) s.kill()
  })

  it('shapes TCP between two hosts to about the link rate', async () => {
    const l = lab as Lab
    const sink = l.exec(1, 'node', ['-e', SINK, l.addr(1)])
    const out = output(sink)
    await out.line((x) => x === 'ready')
    // 24 MiB is ~2 s at 100 Mbit/s: long enough that the HTB burst does not count.
    l.exec(0, 'node', ['-e', SOURCE, l.addr(1), '24'])
    const result = JSON.parse(await out.line((x) => x.startsWith('{'))) as { bytes: number, ms: number }
    expect(result.bytes).toBe(24 * 1024 * 1024)
    const mbit = (result.bytes * 8) / 1e6 / (result.ms / 1000)
    console.log(`lab.e2e: TCP host0 -> host1: ${mbit.toFixed(1)} Mbit/s at a ${RATE_MBIT} Mbit/s link (${(100 * mbit / RATE_MBIT).toFixed(1)}%)`)
    expect(mbit).toBeGreaterThan(0.8 * RATE_MBIT)
    expect(mbit).toBeLessThan(1.05 * RATE_MBIT)
  })

  it('down removes every namespace and link it created', async () => {
    const l = lab as Lab
    expect(l.namespaces().length).toBe(4)
    await l.down()
    expect(l.namespaces()).toEqual([])
    // The veth ends lived only in lab namespaces; none may have leaked into the root namespace.
    const rootLinks = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    expect(rootLinks).not.toMatch(new RegExp(`${l.prefix}|\\bh[0-9]+@`))
    lab = undefined
  })
})

describe.skipIf(!check.ok)('lab host settings (VMESH_LAB_SYSCTLS)', () => {
  it('sets namespaced sysctls in every host and only there', async () => {
    const machine = execFileSync('cat', ['/proc/sys/net/ipv4/tcp_slow_start_after_idle'], { encoding: 'utf8' }).trim()
    const wanted = machine === '0' ? '1' : '0'
    const lab = await Lab.up(2, '100mbit', { sysctls: `net.ipv4.tcp_slow_start_after_idle=${wanted}` })
    try {
      expect([lab.sysctl(0, 'net.ipv4.tcp_slow_start_after_idle'), lab.sysctl(1, 'net.ipv4.tcp_slow_start_after_idle')]).toEqual([wanted, wanted])
      expect(execFileSync('cat', ['/proc/sys/net/ipv4/tcp_slow_start_after_idle'], { encoding: 'utf8' }).trim()).toBe(machine)
    } finally {
      await lab.down()
    }
  })

  it('refuses an entry that is not a plain net.* name=value, and leaves nothing behind', async () => {
    const before = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    await expect(Lab.up(1, '100mbit', { sysctls: 'net.ipv4.tcp_slow_start_after_idle=1;true' })).rejects.toThrow(/must look like net\.ipv4\.name=value/)
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).toBe(before)
  })
})
