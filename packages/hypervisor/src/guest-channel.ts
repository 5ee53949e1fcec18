// Client of the guest's control channel: a virtio-serial port ("vmesh.ctl") that QEMU exposes on
// the host as a unix socket. Line protocol, one request per connection:
//   host -> guest: "<id> <command> <base64 argument>\n"
//   guest -> host: "<id> <exit code> <base64 output>\n"
// The guest reopens its port after each disconnect, so a request may wait up to its poll period.
import { connect } from 'node:net'

export interface GuestHealth {
  name: string
  hostname: string
  counter: number
  cpus: number
  memKiB: number
  uptimeS: number
}

export interface RunResult {
  code: number
  output: string
}

const MAX_REPLY = 1 << 20

export class GuestChannel {
  private nextId = 1
  constructor(private readonly socketPath: string) {}

  async request(command: string, arg = '', timeoutMs = 15_000): Promise<RunResult> {
    const id = `${process.pid}x${this.nextId++}`
    return new Promise<RunResult>((resolve, reject) => {
      const sock = connect(this.socketPath)
      let buf = ''
      const timer = setTimeout(() => {
        sock.destroy()
        reject(new Error(`guest did not answer "${command}" within ${timeoutMs} ms on ${this.socketPath} (is the guest booted and running the vmesh init?)`))
      }, timeoutMs)
      sock.setEncoding('utf8')
      sock.on('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`guest channel ${this.socketPath}: ${err.message}`))
      })
      sock.on('data', (chunk: string) => {
        buf += chunk
        if (buf.length > MAX_REPLY) {
          clearTimeout(timer)
          sock.destroy()
          reject(new Error(`guest reply to "${command}" exceeds ${MAX_REPLY} bytes`))
          return
        }
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim()
          buf = buf.slice(nl + 1)
          const parts = line.split(' ')
          // Replies to an earlier, abandoned request may still be queued in the port: skip them.
          if (parts[0] !== id) continue
          clearTimeout(timer)
          sock.end()
          resolve({ code: Number(parts[1]), output: Buffer.from(parts[2] ?? '', 'base64').toString('utf8') })
          return
        }
      })
      sock.write(`${id} ${command} ${Buffer.from(arg).toString('base64') || '-'}\n`)
    })
  }

  async ping(timeoutMs?: number): Promise<void> {
    const r = await this.request('ping', '', timeoutMs)
    if (r.output !== 'pong') throw new Error(`guest answered ping with "${r.output}"`)
  }

  async health(timeoutMs?: number): Promise<GuestHealth> {
    const r = await this.request('health', '', timeoutMs)
    return parseHealth(r.output)
  }

  async setIdentity(name: string, hostname: string, timeoutMs?: number): Promise<void> {
    if (!/^[a-z0-9][a-z0-9.-]{0,62}$/i.test(hostname)) throw new Error(`invalid hostname "${hostname}"`)
    if (/\s/.test(name)) throw new Error(`invalid VM name "${name}"`)
    const r = await this.request('identity', `${name} ${hostname}`, timeoutMs)
    if (r.code !== 0) throw new Error(`guest refused identity: ${r.output}`)
  }

  /** Runs a shell command in the guest (busybox sh -c). */
  run(command: string, timeoutMs?: number): Promise<RunResult> {
    return this.request('run', command, timeoutMs)
  }
}

export function parseHealth(text: string): GuestHealth {
  const kv = new Map<string, string>()
  for (const part of text.trim().split(/\s+/)) {
    const i = part.indexOf('=')
    if (i > 0) kv.set(part.slice(0, i), part.slice(i + 1))
  }
  const num = (k: string): number => {
    const raw = kv.get(k)
    const v = Number(raw)
    if (!raw || !Number.isFinite(v)) throw new Error(`guest health has no numeric ${k}: "${text}"`)
    return v
  }
  return {
    name: kv.get('name') ?? '',
    hostname: kv.get('hostname') ?? '',
    counter: num('counter'),
    cpus: num('cpus'),
    memKiB: num('memkb'),
    uptimeS: num('uptime')
  }
}
