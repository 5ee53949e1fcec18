// A typed QMP client over a unix socket: one JSON object per line, commands matched to replies by
// id, asynchronous events kept with QEMU's own timestamps (used to measure pauses exactly).
import { connect, type Socket } from 'node:net'
import { EventEmitter } from 'node:events'

export interface QmpEvent {
  event: string
  data: Record<string, unknown>
  /** QEMU's wall clock when the event happened, in milliseconds since the epoch. */
  timeMs: number
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string
  ) {
    super(`QMP ${command} failed: ${desc} (${errorClass})`)
  }
}

interface Pending {
  command: string
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
}

export interface QmpClientOptions {
  /** Time allowed for the socket to appear and the greeting to arrive. */
  connectTimeoutMs?: number
  /** Default per-command timeout. */
  commandTimeoutMs?: number
}

export class QmpClient extends EventEmitter {
  private buf = ''
  private nextId = 1
  private readonly pending = new Map<string, Pending>()
  /** Every event seen since connect, oldest first (bounded). */
  readonly events: QmpEvent[] = []
  private closed = false

  private constructor(
    private readonly sock: Socket,
    private readonly commandTimeoutMs: number
  ) {
    super()
  }

  /** Connects, retrying until the socket exists, then negotiates capabilities. */
  static async connect(path: string, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (opts.connectTimeoutMs ?? 10_000)
    let lastErr: unknown
    while (Date.now() < deadline) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path)
          s.once('connect', () => resolve(s))
          s.once('error', reject)
        })
        const client = new QmpClient(sock, opts.commandTimeoutMs ?? 30_000)
        await client.start(Math.max(1000, deadline - Date.now()))
        return client
      } catch (err) {
        lastErr = err
        await new Promise((r) => setTimeout(r, 20))
      }
    }
    throw new Error(`cannot connect to QMP socket ${path}: ${(lastErr as Error)?.message ?? 'timed out'}`)
  }

  private start(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.sock.destroy()
        reject(new Error('no QMP greeting'))
      }, timeoutMs)
      let greeted = false
      this.sock.setEncoding('utf8')
      this.sock.on('data', (chunk: string) => {
        this.buf += chunk
        let nl: number
        while ((nl = this.buf.indexOf('\n')) >= 0) {
          const line = this.buf.slice(0, nl).trim()
          this.buf = this.buf.slice(nl + 1)
          if (!line) continue
          let msg: Record<string, unknown>
          try {
            msg = JSON.parse(line) as Record<string, unknown>
          } catch {
            continue
          }
          if (!greeted && 'QMP' in msg) {
            greeted = true
            this.execute('qmp_capabilities').then(
              () => {
                clearTimeout(timer)
                resolve()
              },
              (e: Error) => {
                clearTimeout(timer)
                reject(e)
              }
            )
            continue
          }
          this.onMessage(msg)
        }
      })
      this.sock.on('error', () => this.failAll(new Error('QMP connection error')))
      this.sock.on('close', () => {
        this.closed = true
        this.failAll(new Error('QMP connection closed (QEMU exited?)'))
        this.emit('close')
      })
    })
  }

  private onMessage(msg: Record<string, unknown>): void {
    if (typeof msg.event === 'string') {
      const ts = msg.timestamp as { seconds: number; microseconds: number } | undefined
      const ev: QmpEvent = {
        event: msg.event,
        data: (msg.data as Record<string, unknown>) ?? {},
        timeMs: ts ? ts.seconds * 1000 + ts.microseconds / 1000 : Date.now()
      }
      this.events.push(ev)
      if (this.events.length > 1000) this.events.shift()
      this.emit('event', ev)
      return
    }
    const id = String(msg.id ?? '')
    const p = this.pending.get(id)
    if (!p) return
    this.pending.delete(id)
    clearTimeout(p.timer)
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string }
      p.reject(new QmpError(p.command, e.class ?? 'GenericError', e.desc ?? 'unknown error'))
    } else p.resolve(msg.return)
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer)
      p.reject(new Error(`QMP ${p.command}: ${err.message}`))
      this.pending.delete(id)
    }
  }

  /** Runs one command; rejects with QmpError on a QMP error and on timeout. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`QMP ${command}: connection closed`))
    const id = String(this.nextId++)
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`QMP ${command} timed out after ${timeoutMs ?? this.commandTimeoutMs} ms`))
      }, timeoutMs ?? this.commandTimeoutMs)
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer })
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n')
    })
  }

  /** Resolves with the first event (already seen since `sinceIndex`, or future) matching. */
  waitEvent(name: string, match: (e: QmpEvent) => boolean = () => true, timeoutMs = 30_000, sinceIndex?: number): Promise<QmpEvent> {
    if (sinceIndex !== undefined) {
      const seen = this.events.slice(sinceIndex).find((e) => e.event === name && match(e))
      if (seen) return Promise.resolve(seen)
    }
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent): void => {
        if (e.event === name && match(e)) {
          cleanup()
          resolve(e)
        }
      }
      const onClose = (): void => {
        cleanup()
        reject(new Error(`QMP closed while waiting for ${name}`))
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out after ${timeoutMs} ms waiting for QMP event ${name}`))
      }, timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        this.off('event', onEvent)
        this.off('close', onClose)
      }
      this.on('event', onEvent)
      this.on('close', onClose)
    })
  }

  close(): void {
    this.closed = true
    this.sock.destroy()
  }
}
