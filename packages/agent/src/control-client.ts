// The client side of the control API, used by the CLI and the shell: the local unix socket, or
// any cluster member over libp2p (authenticated by the cluster key).
import { connect } from 'node:net'
import { join } from 'node:path'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createClientNode, loadClusterKey } from '@vmesh/mesh'
import { pb, socketChannel, streamChannel } from '@vmesh/wire'
import type { MessageChannel, vmesh } from '@vmesh/wire'
import { CONTROL_PROTOCOL, CONTROL_SOCKET, MAX_RESPONSE_BYTES } from './control-protocol.js'

export type ControlResponse = vmesh.v1.ControlResponse

/** An error reply from the agent: its message is already written for a person. */
export class AgentError extends Error {
  constructor (readonly code: string, message: string) {
    super(message)
    this.name = 'AgentError'
  }
}

export interface ControlClient {
  /** Sends a request and yields every reply; the last one is final. Throws AgentError on error replies. */
  stream: (request: vmesh.v1.ControlRequest.$Properties, signal?: AbortSignal) => AsyncGenerator<ControlResponse>
  /** Sends a request and returns the final reply. */
  call: (request: vmesh.v1.ControlRequest.$Properties) => Promise<ControlResponse>
  /** Where the client points, for messages. */
  readonly target: string
  close: () => Promise<void>
}

abstract class BaseClient implements ControlClient {
  abstract readonly target: string
  protected abstract open (): Promise<MessageChannel>
  abstract close (): Promise<void>

  async * stream (request: vmesh.v1.ControlRequest.$Properties, signal?: AbortSignal): AsyncGenerator<ControlResponse> {
    const channel = await this.open()
    const onAbort = (): void => { void channel.close().catch(() => {}) }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await channel.send(pb.ControlRequest.encode(request).finish())
      for (;;) {
        const frame = await channel.recv()
        if (frame === undefined) {
          if (signal?.aborted === true) return
          throw new Error(`the agent at ${this.target} closed the connection without answering`)
        }
        const reply = pb.ControlResponse.decode(frame)
        if (reply.error != null) throw new AgentError(reply.error.code ?? "ERROR", reply.error.message ?? "unknown error")
        yield reply
        if (reply.final) return
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
      channel.abort(new Error('done'))
    }
  }

  async call (request: vmesh.v1.ControlRequest.$Properties): Promise<ControlResponse> {
    let last: ControlResponse | undefined
    for await (const reply of this.stream(request)) last = reply
    if (last === undefined) throw new Error(`no reply from the agent at ${this.target}`)
    return last
  }
}

export class LocalClient extends BaseClient {
  readonly target: string

  constructor (readonly dataDir: string) {
    super()
    this.target = join(dataDir, CONTROL_SOCKET)
  }

  protected async open (): Promise<MessageChannel> {
    const path = this.target
    const socket = connect(path)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') reject(new Error(`no agent at ${path}: start one with "vmesh agent --data-dir ${this.dataDir} --cluster-key FILE", or pass --data-dir / --peer`))
        else if (err.code === 'ECONNREFUSED') reject(new Error(`the control socket ${path} exists but no agent answers: the agent has stopped or crashed; start it again`))
        else if (err.code === 'EACCES') reject(new Error(`permission denied on ${path}: the control socket is mode 0600, run as the user that runs the agent`))
        else reject(new Error(`cannot connect to ${path}: ${err.message}`))
      })
    })
    return socketChannel(socket, MAX_RESPONSE_BYTES)
  }

  async close (): Promise<void> {}
}

export class PeerClient extends BaseClient {
  private node: Libp2p | undefined

  private constructor (readonly target: string, private readonly clusterKey: Uint8Array) {
    super()
  }

  static async create (peer: string, clusterKeyPath: string): Promise<PeerClient> {
    try {
      multiaddr(peer)
    } catch (err) {
      throw new Error(`--peer ${peer} is not a multiaddr (${(err as Error).message}); for example /ip4/10.0.0.5/tcp/7946`)
    }
    return new PeerClient(peer, await loadClusterKey(clusterKeyPath))
  }

  protected async open (): Promise<MessageChannel> {
    this.node ??= await createClientNode(this.clusterKey)
    try {
      const stream = await this.node.dialProtocol(multiaddr(this.target), CONTROL_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      return streamChannel(stream, MAX_RESPONSE_BYTES)
    } catch (err) {
      const e = err as Error & { code?: string }
      const why = e.name === 'TimeoutError' || e.name === 'AbortError'
        ? 'no answer within 10 s'
        : e.message
      throw new Error(`cannot reach a vmesh agent at ${this.target}: ${why}. Check the address, that the agent runs there, and that --cluster-key is the cluster's key (a wrong key fails the handshake)`)
    }
  }

  async close (): Promise<void> {
    await this.node?.stop()
    this.node = undefined
  }
}
