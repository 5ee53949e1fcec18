// Calls the control API of any host in the cluster, this one included, the same way: the clone
// pipeline asks the source to snapshot and push, and each winner to restore, through this.
import type { PeerId } from '@libp2p/interface'
import { pb } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { forwardRequest } from './control-forward.js'
import { ControlError } from './control-server.js'
import type { ControlReply } from './control-server.js'

export interface HostRef {
  peerId: PeerId
  name: string
}

export async function callHost (
  agent: Agent,
  host: HostRef,
  request: vmesh.v1.ControlRequest.$Properties,
  opts: { signal: AbortSignal, onProgress?: (reply: vmesh.v1.ControlResponse) => void }
): Promise<vmesh.v1.ControlResponse> {
  const decoded = pb.ControlRequest.decode(pb.ControlRequest.encode(request).finish())
  const ctx = {
    request: decoded,
    origin: 'local',
    signal: opts.signal,
    send: async (reply: ControlReply) => { opts.onProgress?.(pb.ControlResponse.fromObject(reply)) }
  }
  if (host.peerId.equals(agent.node.peerId)) {
    const kind = decoded.body
    const handler = kind === undefined ? undefined : agent.handlers[kind]
    if (handler === undefined) throw new ControlError('UNSUPPORTED', `no local handler for ${kind ?? 'empty'}`)
    const final = await handler(ctx)
    return pb.ControlResponse.fromObject(final)
  }
  // Forwarded requests must not be forwarded again by the remote: it sees our peer id as origin.
  return pb.ControlResponse.fromObject(await forwardRequest(agent.node, host.peerId, host.name, decoded, ctx))
}
