// Forwards a control request to the agent on another host (the one that runs the VM in
// question) and relays its replies, so any agent can act on any VM in the cluster.
import type { PeerId } from '@libp2p/interface'
import { pb, streamChannel } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import type { MeshNode } from '@vmesh/mesh'
import { CONTROL_PROTOCOL, MAX_RESPONSE_BYTES } from './control-protocol.js'
import { ControlError } from './control-server.js'
import type { ControlContext, ControlReply } from './control-server.js'

export async function forwardRequest (node: MeshNode, peer: PeerId, hostName: string, request: vmesh.v1.ControlRequest, ctx: ControlContext): Promise<ControlReply> {
  let channel
  try {
    const stream = await node.dialProtocol(peer, CONTROL_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    channel = streamChannel(stream, MAX_RESPONSE_BYTES)
  } catch (err) {
    throw new ControlError('PEER_UNREACHABLE', `host ${hostName} does not answer (${(err as Error).message}); is its agent running?`)
  }
  const onAbort = (): void => { channel.abort(new Error('client went away')) }
  ctx.signal.addEventListener('abort', onAbort, { once: true })
  try {
    await channel.send(pb.ControlRequest.encode(request).finish())
    for (;;) {
      const frame = await channel.recv()
      if (frame === undefined) throw new ControlError('PEER_FAILED', `host ${hostName} closed the connection without a final answer`)
      const reply = pb.ControlResponse.decode(frame)
      if (reply.error != null) throw new ControlError(reply.error.code ?? 'ERROR', `${hostName}: ${reply.error.message ?? ''}`)
      if (reply.final) return reply
      await ctx.send(reply)
    }
  } finally {
    ctx.signal.removeEventListener('abort', onAbort)
    await channel.close().catch(() => {})
  }
}
