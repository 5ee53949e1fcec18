// Serves the control API on the local unix socket (mode 0600) and on a libp2p protocol for
// cluster members, with the same handlers. One request per connection; every frame is bounded
// and every failure is answered with an ErrorReply and counted, never a crash.
import { createServer, connect } from 'node:net'
import type { Server, Socket } from 'node:net'
import { chmod, unlink } from 'node:fs/promises'
import { pb, socketChannel, streamChannel } from '@vmesh/wire'
import type { MessageChannel, vmesh } from '@vmesh/wire'
import type { Counters, MeshNode } from '@vmesh/mesh'
import { CONTROL_PROTOCOL, MAX_CONTROL_CONNECTIONS, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT_MS } from './control-protocol.js'
import type { Logger } from './logger.js'

export type ControlReply = vmesh.v1.ControlResponse.$Properties

/** What a handler gets: the request, a way to send intermediate replies, and closure news. */
export interface ControlContext {
  request: vmesh.v1.ControlRequest
  /** Sends a non-final reply (progress, watch updates). */
  send: (reply: ControlReply) => Promise<void>
  /** Aborted when the client goes away. */
  signal: AbortSignal
  /** "local" for the unix socket, else the remote peer id. */
  origin: string
}

export type ControlHandler = (ctx: ControlContext) => Promise<ControlReply>

/** An error whose message is meant for the person at the CLI. */
export class ControlError extends Error {
  constructor (readonly code: string, message: string) {
    super(message)
    this.name = 'ControlError'
  }
}

export class ControlServer {
  private server: Server | undefined
  private active = 0

  constructor (
    private readonly handlers: Partial<Record<NonNullable<vmesh.v1.ControlRequest['body']>, ControlHandler>>,
    private readonly counters: Counters,
    private readonly log: Logger
  ) {}

  async listenUnix (path: string): Promise<void> {
    await removeStaleSocket(path)
    const server = createServer((socket) => { void this.serveSocket(socket) })
    // Create the socket with mode 0600 from the start: no window where others could connect.
    const oldMask = process.umask(0o177)
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(path, () => { server.off('error', reject); resolve() })
      })
    } finally {
      process.umask(oldMask)
    }
    await chmod(path, 0o600)
    server.on('error', (err) => { this.log.warn(`control socket: ${err.message}`) })
    this.server = server
  }

  async serveLibp2p (node: MeshNode): Promise<void> {
    await node.handle(CONTROL_PROTOCOL, (stream, conn) => {
      void this.serve(streamChannel(stream, MAX_RESPONSE_BYTES), conn.remotePeer.toString())
    }, { maxInboundStreams: MAX_CONTROL_CONNECTIONS })
  }

  async close (path?: string): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
    if (path !== undefined) await unlink(path).catch(() => {})
  }

  private async serveSocket (socket: Socket): Promise<void> {
    socket.on('error', () => {})
    await this.serve(socketChannel(socket, MAX_RESPONSE_BYTES), 'local')
  }

  private async serve (channel: MessageChannel, origin: string): Promise<void> {
    if (this.active >= MAX_CONTROL_CONNECTIONS) {
      this.counters.inc('rejected.control.busy')
      await this.reply(channel, errorReply('BUSY', 'the agent is serving too many control connections; try again shortly'))
      channel.abort(new Error('busy'))
      return
    }
    this.active++
    const closed = new AbortController()
    try {
      const frame = await channel.recv(REQUEST_TIMEOUT_MS)
      if (frame === undefined) return
      if (frame.length > MAX_REQUEST_BYTES) throw new ControlError('BAD_REQUEST', `request of ${frame.length} bytes exceeds ${MAX_REQUEST_BYTES}`)
      let request: vmesh.v1.ControlRequest
      try {
        request = pb.ControlRequest.decode(frame)
      } catch (err) {
        throw new ControlError('BAD_REQUEST', `request does not decode: ${(err as Error).message}`)
      }
      const kind = request.body
      const handler = kind === undefined ? undefined : this.handlers[kind]
      if (handler === undefined) throw new ControlError('UNSUPPORTED', `this agent does not support the request "${kind ?? 'empty'}"; is the CLI newer than the agent?`)
      // A watch keeps the connection open; notice when the client goes away.
      void channel.recv().then(() => closed.abort(), () => closed.abort())
      const final = await handler({
        request,
        origin,
        signal: closed.signal,
        send: async (reply) => { await channel.send(pb.ControlResponse.encode({ ...reply, final: false }).finish()) }
      })
      await this.reply(channel, final)
      await channel.close()
    } catch (err) {
      if (err instanceof ControlError) {
        this.counters.inc('rejected.control.request')
        await this.reply(channel, errorReply(err.code, err.message))
        await channel.close().catch(() => {})
      } else {
        this.counters.inc('rejected.control.stream')
        this.log.debug(`control connection from ${origin}: ${(err as Error).message}`)
        channel.abort(err as Error)
      }
    } finally {
      closed.abort()
      this.active--
    }
  }

  private async reply (channel: MessageChannel, reply: ControlReply): Promise<void> {
    try {
      await channel.send(pb.ControlResponse.encode({ ...reply, final: true }).finish())
    } catch { /* the client went away */ }
  }
}

export function errorReply (code: string, message: string): ControlReply {
  return { error: { code, message } }
}

/** A socket file left by a crashed agent is removed; one that answers belongs to a live agent. */
async function removeStaleSocket (path: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
  if (alive) throw new Error(`another vmesh agent is already running with this data dir (its control socket ${path} answers)`)
  await unlink(path).catch(() => {})
}
