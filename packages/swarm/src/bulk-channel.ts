// An authenticated bulk channel: one plain TCP connection carrying AES-256-GCM sealed records
// (see bulk-cipher.ts), keyed through an offer exchanged over libp2p (see bulk-offer.ts).
//
// Opening, on a fresh TCP connection:
//   dialer  -> listener: "VMB1", ticket (16 bytes), sealed empty record (proves the dialer's key)
//   listener -> dialer:  sealed empty record (proves the listener's key)
// Then both sides send sealed records; each direction ends with a record carrying the final bit.
import { connect, type Socket } from 'node:net'
import {
  BULK_TICKET_BYTES, BulkProtocolError, RecordOpener, RecordSealer, RECORD_HEADER_BYTES, RECORD_LIMIT_BYTES, RECORD_TAG_BYTES,
  type BulkKeys, type OpenedRecord
} from './bulk-cipher.js'

export const BULK_MAGIC = Buffer.from('VMB1')
/** Bytes the dialer sends before anything else: magic, ticket, sealed empty confirmation record. */
/** Size of the dialer's reused read buffer: several 64 KiB socket reads at once. */
const READ_BUFFER_BYTES = 256 * 1024
export const BULK_HELLO_BYTES = BULK_MAGIC.length + BULK_TICKET_BYTES + RECORD_HEADER_BYTES + RECORD_TAG_BYTES

export interface BulkChannelOptions {
  /**
   * Plaintext bytes per record. 256 KiB measured best on loopback (packages/swarm/README.md, "Data
   * plane"): 64 KiB pays the per-record cipher setup 4x as often (-6%), 1 MiB gains nothing and
   * quadruples what a receiver holds before it may release data.
   */
  recordBytes: number
  /** Largest record accepted from the peer; both sides must agree (the offer carries it). */
  maxRecordBytes: number
  /** Received, authenticated bytes queued for the reader before the socket is paused. */
  readHighWaterBytes: number
  /** Bytes the socket may buffer before write() waits for 'drain'. */
  writeHighWaterBytes: number
}

export const DEFAULT_BULK_OPTIONS: BulkChannelOptions = {
  recordBytes: 256 * 1024,
  maxRecordBytes: 1024 * 1024,
  readHighWaterBytes: 4 * 1024 * 1024,
  writeHighWaterBytes: 1024 * 1024
}

export function resolveBulkOptions (partial: Partial<BulkChannelOptions> = {}): BulkChannelOptions {
  const o = { ...DEFAULT_BULK_OPTIONS, ...partial }
  if (!(o.maxRecordBytes >= 1 && o.maxRecordBytes <= RECORD_LIMIT_BYTES)) throw new Error(`maxRecordBytes must be 1..${RECORD_LIMIT_BYTES}, got ${o.maxRecordBytes}`)
  if (!(o.recordBytes >= 1 && o.recordBytes <= o.maxRecordBytes)) throw new Error(`recordBytes must be 1..maxRecordBytes (${o.maxRecordBytes}), got ${o.recordBytes}`)
  return o
}

export class BulkChannelClosedError extends Error {
  constructor (detail: string) {
    super(`bulk channel closed: ${detail}`)
    this.name = 'BulkChannelClosedError'
  }
}

/**
 * Both directions of an open bulk channel. write() respects TCP backpressure; iterating yields the
 * peer's authenticated plaintext in order (pieces of records, never unauthenticated bytes) and ends
 * when the peer calls end(); it throws if the stream was tampered with or cut short.
 */
export class BulkChannel implements AsyncIterable<Buffer> {
  private readonly queue: Buffer[] = []
  private queuedBytes = 0
  private readEnded = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private writeEnded = false
  /** The peer's FIN arrived / our final record left: both needed before the socket closes. */
  private peerEnded = false
  private writeFlushed = false
  private drainWaiters: Array<{ resolve: () => void, reject: (e: Error) => void }> = []
  /** Plaintext bytes written by this side / received from the peer. */
  bytesWritten = 0
  bytesRead = 0

  /** @internal Built by dialBulkChannel() and BulkListener once the opening succeeded. */
  constructor (
    private readonly socket: Socket,
    private readonly sealer: RecordSealer,
    private readonly opener: RecordOpener,
    private readonly options: BulkChannelOptions,
    initial: OpenedRecord[],
    /** The socket reads into a reused buffer and its owner forwards bytes to receiveBytes(). */
    readsForwarded = false
  ) {
    socket.setNoDelay(true)
    if (!readsForwarded) socket.on('data', (chunk: Buffer) => this.receiveBytes(chunk))
    socket.on('end', () => this.onEnd())
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => {
      if (!this.readEnded) this.fail(new BulkChannelClosedError('connection closed before the peer finished sending'))
      this.rejectDrainWaiters(new BulkChannelClosedError('connection closed'))
    })
    socket.on('drain', () => {
      const waiters = this.drainWaiters
      this.drainWaiters = []
      for (const w of waiters) w.resolve()
    })
    if (initial.length > 0) this.deliver(initial)
  }

  get remoteAddress (): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`
  }

  /** Seals chunk into records and writes them; resolves when the socket can take more. */
  async write (chunk: Uint8Array): Promise<void> {
    if (this.writeEnded) throw new BulkChannelClosedError('write() after end()')
    if (this.failure !== undefined) throw this.failure
    const size = this.options.recordBytes
    for (let at = 0; at < chunk.length; at += size) {
      this.writeRecord(chunk.subarray(at, Math.min(at + size, chunk.length)), false)
      if (this.socket.writableLength >= this.options.writeHighWaterBytes) await this.drained()
    }
    this.bytesWritten += chunk.length
  }

  /** Sends the final record and half-closes; resolves once everything is handed to the kernel. */
  async end (): Promise<void> {
    if (this.writeEnded) return
    if (this.failure !== undefined) throw this.failure
    this.writeEnded = true
    this.writeRecord(Buffer.alloc(0), true)
    await new Promise<void>((resolve, reject) => {
      this.socket.end(() => resolve())
      this.socket.once('error', reject)
    })
    this.writeFlushed = true
    this.closeIfDone()
  }

  /** Tears the connection down at once. */
  destroy (reason?: Error): void {
    this.fail(reason ?? new BulkChannelClosedError('destroyed locally'))
    this.socket.destroy()
  }

  /** Resolves when the socket has fully closed. */
  async closed (): Promise<void> {
    if (this.socket.closed) return
    await new Promise<void>((resolve) => this.socket.once('close', () => resolve()))
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<Buffer> {
    for (;;) {
      const piece = this.queue.shift()
      if (piece !== undefined) {
        this.queuedBytes -= piece.length
        if (this.socket.isPaused() && this.queuedBytes < this.options.readHighWaterBytes / 2) this.socket.resume()
        yield piece
        continue
      }
      // Once the final record is in, every byte was authenticated: a later socket error changes nothing.
      if (this.readEnded) return
      if (this.failure !== undefined) throw this.failure
      await new Promise<void>((resolve) => { this.wake = resolve })
    }
  }

  private writeRecord (plaintext: Uint8Array, final: boolean): void {
    const [header, body, tag] = this.sealer.seal(plaintext, final)
    this.socket.cork()
    this.socket.write(header)
    if (body.length > 0) this.socket.write(body)
    this.socket.write(tag)
    this.socket.uncork()
  }

  private async drained (): Promise<void> {
    if (this.socket.destroyed) throw this.failure ?? new BulkChannelClosedError('connection closed')
    await new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject }))
  }

  private rejectDrainWaiters (err: Error): void {
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) w.reject(this.failure ?? err)
  }

  /**
   * @internal Bytes from the socket. The chunk may be a view of a reused read buffer: the opener
   * decrypts it into fresh buffers and copies any partial header or tag, so nothing keeps it.
   */
  receiveBytes (chunk: Buffer): void {
    if (this.failure !== undefined) return
    let records: OpenedRecord[]
    try {
      records = this.opener.push(chunk)
    } catch (err) {
      this.destroy(err as Error)
      return
    }
    this.deliver(records)
  }

  private deliver (records: OpenedRecord[]): void {
    for (const r of records) {
      for (const p of r.pieces) this.queue.push(p)
      this.queuedBytes += r.bytes
      this.bytesRead += r.bytes
      if (r.final) this.readEnded = true
    }
    if (this.queuedBytes >= this.options.readHighWaterBytes) this.socket.pause()
    if (records.length > 0) this.signal()
  }

  private onEnd (): void {
    this.peerEnded = true
    try {
      this.opener.end()
    } catch (err) {
      // The peer stopped without its final record: nothing more can come, tear down.
      this.destroy(err as Error)
      return
    }
    this.closeIfDone()
    this.signal()
  }

  /** With half-open sockets the connection closes only once both directions have ended. */
  private closeIfDone (): void {
    if (this.peerEnded && this.writeFlushed) this.socket.destroy()
  }

  private fail (err: Error): void {
    this.failure ??= err
    this.rejectDrainWaiters(err)
    this.signal()
  }

  private signal (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }
}

export interface DialBulkOptions extends Partial<BulkChannelOptions> {
  host: string
  port: number
  ticket: Uint8Array
  keys: BulkKeys
  /** Give up if the listener has not confirmed within this time. */
  timeoutMs?: number
}

/** Connects to a BulkListener, presents the ticket and proves the key; resolves once the listener proved its own. */
export async function dialBulkChannel (opts: DialBulkOptions): Promise<BulkChannel> {
  const options = resolveBulkOptions(opts)
  if (opts.ticket.length !== BULK_TICKET_BYTES) throw new Error(`bulk ticket must be ${BULK_TICKET_BYTES} bytes`)
  const sealer = new RecordSealer(opts.keys.send)
  const opener = new RecordOpener(opts.keys.receive, options.maxRecordBytes)
  // The dialer reads into one reused buffer instead of a fresh 64 KiB Buffer per read: half the
  // receiver's allocations, and with them a good part of its garbage-collection time (README).
  let forward: (chunk: Buffer) => void = () => {}
  const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
  const socket = connect({
    host: opts.host,
    port: opts.port,
    // Each direction ends with its own final record: the peer finishing its half must not end
    // ours (Node ends the writable side on the peer's FIN unless half-open is allowed).
    allowHalfOpen: true,
    onread: { buffer: readBuffer, callback: (n: number, buf: Uint8Array) => { forward((buf as Buffer).subarray(0, n)); return true } }
  })
  const timeoutMs = opts.timeoutMs ?? 10_000
  return await new Promise<BulkChannel>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`bulk listener ${opts.host}:${opts.port} did not confirm the channel within ${timeoutMs} ms`)), timeoutMs)
    const fail = (err: Error): void => {
      clearTimeout(timer)
      forward = () => {}
      socket.destroy()
      reject(err)
    }
    forward = (chunk: Buffer): void => {
      let records: OpenedRecord[]
      try {
        records = opener.push(chunk)
      } catch (err) {
        fail(err as Error)
        return
      }
      if (opener.recordsOpened === 0) return
      // The listener's confirmation is record 0 and empty; anything after it is channel data.
      const first = records[0] as OpenedRecord
      if (first.bytes !== 0 || first.final) {
        fail(new BulkProtocolError('bulk listener sent data instead of its confirmation record'))
        return
      }
      clearTimeout(timer)
      socket.off('error', onError)
      socket.off('close', onClose)
      socket.off('end', onClose)
      // Records that arrived in the same chunk as the confirmation belong to the channel.
      const channel = new BulkChannel(socket, sealer, opener, options, records.slice(1), true)
      forward = (c) => channel.receiveBytes(c)
      resolve(channel)
    }
    const onError = (err: Error): void => fail(new Error(`cannot open bulk channel to ${opts.host}:${opts.port}: ${err.message}`))
    const onClose = (): void => fail(new Error(`bulk listener ${opts.host}:${opts.port} closed the connection: ticket refused or expired`))
    socket.once('error', onError)
    socket.once('close', onClose)
    // Half-open sockets do not close on the listener's FIN: its refusal shows as 'end'.
    socket.once('end', onClose)
    socket.once('connect', () => {
      const [h, b, t] = sealer.seal(Buffer.alloc(0))
      socket.write(Buffer.concat([BULK_MAGIC, opts.ticket, h, b, t]))
    })
  })
}
