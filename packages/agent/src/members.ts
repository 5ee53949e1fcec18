// Turns the cluster view into the control API's Member messages.
import type { MemberEntry, Membership } from '@vmesh/mesh'
import { toMemberState } from '@vmesh/mesh'
import type { vmesh } from '@vmesh/wire'

export function memberMessage (e: MemberEntry, selfId: string, now: number): vmesh.v1.Member.$Properties {
  return {
    peerId: e.advert.peerId,
    name: e.advert.name,
    addrs: e.advert.addrs,
    state: toMemberState[e.claim.status],
    incarnation: e.claim.incarnation,
    lastAdvertAgeMs: Math.max(0, now - e.lastAdvertAt),
    resources: e.advert.resources,
    vms: e.advert.vms,
    isSelf: e.id === selfId,
    agentVersion: e.advert.agentVersion
  }
}

export function membersReply (membership: Membership): vmesh.v1.MembersReply.$Properties {
  const now = Date.now()
  const self = membership.view.get(membership.selfId)
  return {
    members: membership.view.list().map((e) => memberMessage(e, membership.selfId, now)),
    self: self?.advert.peerId ?? new Uint8Array()
  }
}
