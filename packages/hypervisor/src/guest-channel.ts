// Client of the guest's control channel: a virtio-serial port ("vmesh.ctl") that QEMU exposes on
// the host as a unix socket. Line protocol:
//   host -> guest: "<id> <command> <base64 argument>\n"
//   guest -> host: "<id> <exit code> <base64 output>\n"
// An argument or output may instead be "=" and plain words joined by commas (base64 never starts
// with "="): a guest that answers ping with "pong plain-args" takes arguments that way, which its
// shell reads without a fork. A fresh clone pays tens of ms of cold TCG translation per fork, and
// base64 in and out cost identity several.
// One connection is kept open and requests are matched to replies by id. Connecting anew for each
// request (the first design) lost about one request in a hundred: on each disconnect the guest
// saw EOF, closed its port and reopened it, and a request written in that gap was dropped. The
// vmesh init now keeps its port open through EOF; for guests that do not, the first request
// after a (re)connect is preceded by pings until one is answered, and idempotent requests are
// written again under the same id when unanswered (request's resendAfterMs).
import { connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'

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
const PING_EVERY_MS = 100
const MAX_PINGS_OUTSTANDING = 3
const MAX_RESEND_GAP_MS = 5000
const PONG_PLAIN_ARGS = 'pong plain-args'
const PLAIN_WORD = /^[A-Za-z0-9._:-]+$/
const isPong = (output: string): boolean => output === 'pong' || output === PONG_PLAIN_ARGS

export class GuestChannel {
  private nextId = 1
  /**
   * Unique per channel: the guest answers a repeated id from memory (see request), and a clone's
   * guest remembers the last id its source's guest was sent, so ids must never repeat across
   * channels, VMs or agent restarts.
   */
  private readonly idPrefix = randomBytes(6).toString('hex')
  /** The guest behind the current connection takes plain arguments (it said so in its pong). */
  private plainArgs = false
  private sock: Socket | undefined
  /** Resolves once a new connection has been proven by an answered ping. */
  private ready: Promise<Socket> | undefined
  private buf = ''
  private readonly pending = new Map<string, { resolve: (r: RunResult) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }>()

  constructor(private readonly socketPath: string) {}

  /**
   * Sends a request and waits for its reply. With `resendAfterMs`, an unanswered request is
   * written again under the same id after that long, then after twice that, up to 5 s apart:
   * a request written while the guest reopens its port is lost, while a slow guest's late reply
   * to the first copy still counts (a retry under a new id would wait for the guest to run the
   * command twice). Only for idempotent commands.
   */
  async request(command: string, arg: string | string[] = '', timeoutMs = 15_000, resendAfterMs?: number): Promise<RunResult> {
    const deadline = Date.now() + timeoutMs
    const sock = await this.connection(deadline, command, timeoutMs)
    return await this.send(sock, command, this.encodeArg(arg), Math.max(1, deadline - Date.now()), resendAfterMs)
  }

  /** Words go plainly to a guest that takes them (and when each is plain); the rest as base64. */
  private encodeArg(arg: string | string[]): string {
    if (typeof arg !== 'string' && this.plainArgs && arg.length > 0 && arg.every((w) => PLAIN_WORD.test(w))) return `=${arg.join(',')}`
    const text = typeof arg === 'string' ? arg : arg.join(' ')
    return Buffer.from(text).toString('base64') || '-'
  }

  /** Drops the connection; pending requests fail. */
  close(): void {
    this.sock?.destroy()
    this.sock = undefined
    this.ready = undefined
  }

  private async connection(deadline: number, command: string, timeoutMs: number): Promise<Socket> {
    this.ready ??= this.open(deadline, command, timeoutMs).catch((err: Error) => {
      this.close()
      throw err
    })
    return await this.ready
  }

  private async open(deadline: number, command: string, timeoutMs: number): Promise<Socket> {
    const sock = connect(this.socketPath)
    this.sock = sock
    sock.setEncoding('utf8')
    // The connection must not keep a CLI or test process alive on its own; waiting requests do.
    sock.unref()
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve)
      sock.once('error', (err) => reject(new Error(`guest channel ${this.socketPath}: ${err.message}`)))
    })
    sock.on('data', (chunk: string) => this.onData(chunk))
    sock.on('error', () => {})
    sock.on('close', () => {
      if (this.sock === sock) { this.sock = undefined; this.ready = undefined }
      this.failAll(new Error(`guest channel ${this.socketPath} closed`))
    })
    // Prove the link: a ping every PING_EVERY_MS until one is answered (the guest may be
    // reopening its port, and what is written before it does is lost). Not waiting for each
    // ping to time out before the next matters for a fresh clone: its guest reopens the port
    // a few hundred ms after it resumes, and a 1 s ping timeout used to add up to a second.
    return await new Promise<Socket>((resolve, reject) => {
      let settled = false
      let outstanding = 0
      const finish = (err?: Error): void => {
        if (settled) return
        settled = true
        clearInterval(pinger)
        if (err === undefined) resolve(sock)
        else { sock.destroy(); reject(err) }
      }
      const ping = (): void => {
        const left = deadline - Date.now()
        if (left <= 0) {
          finish(new Error(`guest did not answer "${command}" within ${timeoutMs} ms on ${this.socketPath} (is the guest booted and running the vmesh init?)`))
          return
        }
        // A busy guest answers slowly: cap the pings queued in front of the real request.
        if (outstanding >= MAX_PINGS_OUTSTANDING) return
        outstanding++
        this.send(sock, 'ping', '-', left).then((r) => {
          if (!isPong(r.output)) return
          this.plainArgs = r.output === PONG_PLAIN_ARGS
          finish()
        }, (err: Error) => { if (sock.destroyed) finish(err) })
          .finally(() => { outstanding-- })
      }
      const pinger = setInterval(ping, PING_EVERY_MS)
      ping()
    })
  }

  /** `encodedArg`: base64, "-" for none, or "=" and plain words. */
  private async send(sock: Socket, command: string, encodedArg: string, timeoutMs: number, resendAfterMs?: number): Promise<RunResult> {
    const id = `${this.idPrefix}x${this.nextId++}`
    const line = `${id} ${command} ${encodedArg}\n`
    let resend: NodeJS.Timeout | undefined
    const scheduleResend = (afterMs: number): void => {
      resend = setTimeout(() => {
        if (!this.pending.has(id) || sock.destroyed) return
        sock.write(line)
        scheduleResend(Math.min(MAX_RESEND_GAP_MS, afterMs * 2))
      }, afterMs)
    }
    try {
      return await new Promise<RunResult>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id)
          reject(new Error(`guest did not answer "${command}" within ${timeoutMs} ms on ${this.socketPath} (is the guest booted and running the vmesh init?)`))
        }, timeoutMs)
        this.pending.set(id, { resolve, reject, timer })
        sock.write(line)
        if (resendAfterMs !== undefined) scheduleResend(resendAfterMs)
      })
    } finally {
      clearTimeout(resend)
    }
  }

  private onData(chunk: string): void {
    this.buf += chunk
    if (this.buf.length > MAX_REPLY) {
      this.failAll(new Error(`guest reply exceeds ${MAX_REPLY} bytes`))
      this.close()
      return
    }
    let nl: number
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const parts = this.buf.slice(0, nl).trim().split(' ')
      this.buf = this.buf.slice(nl + 1)
      // Replies to requests that timed out may still arrive: no one waits for them.
      const p = this.pending.get(parts[0] ?? '')
      if (p === undefined) continue
      this.pending.delete(parts[0] as string)
      clearTimeout(p.timer)
      const out = parts[2] ?? ''
      p.resolve({ code: Number(parts[1]), output: out.startsWith('=') ? out.slice(1) : Buffer.from(out, 'base64').toString('utf8') })
    }
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer)
      p.reject(err)
      this.pending.delete(id)
    }
  }

  async ping(timeoutMs?: number): Promise<void> {
    const r = await this.request('ping', '', timeoutMs)
    if (!isPong(r.output)) throw new Error(`guest answered ping with "${r.output}"`)
  }

  async health(timeoutMs?: number): Promise<GuestHealth> {
    const r = await this.request('health', '', timeoutMs)
    return parseHealth(r.output)
  }

  /**
   * Sets the guest's name and hostname and, with `mac`, moves the NIC that has MAC `from` to MAC
   * `to`. Resolves with the MAC the guest reports it set ('' if none: an older guest init
   * ignores the request).
   */
  async setIdentity(name: string, hostname: string, timeoutMs?: number, mac?: { from: string; to: string }, resendAfterMs?: number): Promise<string> {
    if (!/^[a-z0-9][a-z0-9.-]{0,62}$/i.test(hostname)) throw new Error(`invalid hostname "${hostname}"`)
    if (/\s/.test(name)) throw new Error(`invalid VM name "${name}"`)
    const macRe = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/
    if (mac && (!macRe.test(mac.from) || !macRe.test(mac.to))) throw new Error(`invalid MAC change ${mac.from} -> ${mac.to}`)
    const r = await this.request('identity', mac ? [name, hostname, mac.from, mac.to] : [name, hostname], timeoutMs, resendAfterMs)
    if (r.code !== 0) throw new Error(`guest refused identity: ${r.output}`)
    const set = /(?:^|[\s,])mac=([^\s,]+)/.exec(r.output)?.[1] ?? ''
    return macRe.test(set) ? set : ''
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
