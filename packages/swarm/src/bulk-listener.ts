// The TCP side of bulk offers: accepts a connection only if it presents a ticket registered with
// expect() (one-time, before it expires) and proves it holds the matching key. Everything else is
// closed at once and counted; a peer can waste a socket for at most helloTimeoutMs.
import { createServer, type Server, type Socket } from 'node:net'
import { BULK_TICKET_BYTES, RecordOpener, RecordSealer, type BulkKeys, type OpenedRecord } from './bulk-cipher.js'
import { BULK_HELLO_BYTES, BULK_MAGIC, BulkChannel, resolveBulkOptions, type BulkChannelOptions } from './bulk-channel.js'

export interface BulkListenerOptions extends Partial<BulkChannelOptions> {
  /** Address to listen on; the offer tells the peer where to connect. */
  host?: string
  /** 0 picks a free port. */
  port?: number
  /** A connection must send its whole hello within this time. */
  helloTimeoutMs?: number
  /** Tickets registered at once; bounds memory if offers are made faster than used. */
  maxPendingTickets?: number
}

/** Why connections were refused, by reason; the listener never crashes on what a peer sends. */
export interface BulkListenerStats {
  accepted: number
  rejected: number
  badMagic: number
  unknownTicket: number
  badKey: number
  helloTimeout: number
  earlyClose: number
}

interface Expectation {
  keys: BulkKeys
  timer: NodeJS.Timeout
  resolve: (c: BulkChannel) => void
  reject: (e: Error) => void
}

export class BulkListener {
  readonly options: BulkChannelOptions
  readonly stats: BulkListenerStats = { accepted: 0, rejected: 0, badMagic: 0, unknownTicket: 0, badKey: 0, helloTimeout: 0, earlyClose: 0 }
  private readonly server: Server
  private readonly expected = new Map<string, Expectation>()
  private readonly pending = new Set<Socket>()
  private readonly helloTimeoutMs: number
  private readonly maxPendingTickets: number

  constructor (private readonly init: BulkListenerOptions = {}) {
    this.options = resolveBulkOptions(init)
    this.helloTimeoutMs = init.helloTimeoutMs ?? 5_000
    this.maxPendingTickets = init.maxPendingTickets ?? 1024
    // Half-open: each direction of a channel ends on its own (see dialBulkChannel).
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket))
  }

  async listen (): Promise<{ host: string, port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.init.port ?? 0, this.init.host ?? '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    return this.address
  }

  get address (): { host: string, port: number } {
    const a = this.server.address()
    if (a === null || typeof a === 'string') throw new Error('bulk listener is not listening; call listen() first')
    return { host: a.address, port: a.port }
  }

  /**
   * Registers a one-time ticket; resolves with the channel when the peer connects with it and
   * proves the key, rejects if that does not happen within ttlMs.
   */
  async expect (ticket: Uint8Array, keys: BulkKeys, ttlMs: number): Promise<BulkChannel> {
    if (ticket.length !== BULK_TICKET_BYTES) throw new Error(`bulk ticket must be ${BULK_TICKET_BYTES} bytes`)
    if (this.expected.size >= this.maxPendingTickets) throw new Error(`bulk listener already waits for ${this.expected.size} connections; raise maxPendingTickets or let offers expire`)
    const id = Buffer.from(ticket).toString('hex')
    if (this.expected.has(id)) throw new Error('bulk ticket registered twice')
    const { host, port } = this.address
    return await new Promise<BulkChannel>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.expected.delete(id)
        reject(new Error(`bulk peer did not connect within ${ttlMs} ms of the offer; it may be unable to reach ${host}:${port}`))
      }, ttlMs)
      timer.unref()
      this.expected.set(id, { keys, timer, resolve, reject })
    })
  }

  async close (): Promise<void> {
    for (const [id, e] of this.expected) {
      clearTimeout(e.timer)
      e.reject(new Error('bulk listener closed before the peer connected'))
      this.expected.delete(id)
    }
    for (const s of this.pending) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private onConnection (socket: Socket): void {
    this.pending.add(socket)
    let hello: Buffer = Buffer.alloc(0)
    let done = false
    const refuse = (reason: keyof BulkListenerStats): void => {
      if (done) return
      done = true
      this.stats.rejected++
      this.stats[reason]++
      this.pending.delete(socket)
      socket.destroy()
    }
    const timer = setTimeout(() => refuse('helloTimeout'), this.helloTimeoutMs)
    const onError = (): void => refuse('earlyClose')
    const onClose = (): void => { clearTimeout(timer); refuse('earlyClose') }
    socket.on('error', onError)
    socket.once('close', onClose)
    const onData = (chunk: Buffer): void => {
      hello = hello.length === 0 ? chunk : Buffer.concat([hello, chunk])
      // Refuse a wrong magic as soon as it shows, without waiting for the rest.
      const magicSeen = Math.min(hello.length, BULK_MAGIC.length)
      if (!hello.subarray(0, magicSeen).equals(BULK_MAGIC.subarray(0, magicSeen))) { refuse('badMagic'); return }
      if (hello.length < BULK_HELLO_BYTES) return
      const ticketEnd = BULK_MAGIC.length + BULK_TICKET_BYTES
      const id = hello.subarray(BULK_MAGIC.length, ticketEnd).toString('hex')
      const expectation = this.expected.get(id)
      if (expectation === undefined) { refuse('unknownTicket'); return }
      const opener = new RecordOpener(expectation.keys.receive, this.options.maxRecordBytes)
      let records: OpenedRecord[]
      try {
        records = opener.push(hello.subarray(ticketEnd))
      } catch {
        // The ticket stays valid: someone who saw it on the wire cannot burn it without the key.
        refuse('badKey')
        return
      }
      const first = records[0]
      if (first === undefined || first.bytes !== 0 || first.final) { refuse('badKey'); return }
      done = true
      clearTimeout(timer)
      clearTimeout(expectation.timer)
      this.expected.delete(id)
      this.pending.delete(socket)
      socket.off('data', onData)
      socket.off('error', onError)
      socket.off('close', onClose)
      const sealer = new RecordSealer(expectation.keys.send)
      const [h, b, t] = sealer.seal(Buffer.alloc(0))
      socket.write(Buffer.concat([h, b, t]))
      this.stats.accepted++
      expectation.resolve(new BulkChannel(socket, sealer, opener, this.options, records.slice(1)))
    }
    socket.on('data', onData)
  }
}
