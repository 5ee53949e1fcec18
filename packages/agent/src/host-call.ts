// Calls the control API of any host in the cluster, this one included, the same way: the clone
// pipeline asks the source to snapshot and push, and each winner to restore, through this.
import type { PeerId } from '@libp2p/interface'
import { pb } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { forwardRequest } from './control-forward.js'
import { ControlError } from './control-server.js'
import type { ControlContext, ControlReply } from './control-server.js'

export interface HostRef {
  peerId: PeerId
  name: string
}

/** Whether a request came from another member (its own fan-out: answer for this host only). */
export function isMember (agent: Agent, origin: string): boolean {
  return agent.membership.view.get(origin) !== undefined
}

/**
 * Whether a request speaks for the whole cluster: it came from a person (the local socket, or a
 * client outside the cluster) rather than from a member fanning out its own request.
 */
export function fansOut (agent: Agent, ctx: ControlContext): boolean {
  return ctx.origin === 'local' || !isMember(agent, ctx.origin)
}

/**
 * Sends `request` to every other alive host at once. Each answer goes to `read`, which checks it;
 * what `read` throws, like a host that does not answer, goes to `failed` with that host's name.
 */
export async function askAliveOthers (
  agent: Agent,
  request: vmesh.v1.ControlRequest.$Properties,
  signal: AbortSignal,
  read: (reply: vmesh.v1.ControlResponse, host: string) => void,
  failed: (host: string, err: Error) => void
): Promise<void> {
  await Promise.all(agent.membership.view.others('alive').map(async (e) => {
    const host = e.advert.name
    try {
      read(await callHost(agent, { peerId: e.peerId, name: host }, request, { signal }), host)
    } catch (err) {
      failed(host, err as Error)
    }
  }))
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
