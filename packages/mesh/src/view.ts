// The cluster view: one entry per member with its last advert and its state. Merging follows
// SWIM's precedence rules (claims.ts); adverts replace older adverts by (incarnation, seq).
import { EventEmitter } from 'node:events'
import type { PeerId } from '@libp2p/interface'
import type { vmesh } from '@vmesh/wire'
import { supersedes } from './claims.js'
import type { Claim, MemberStatus } from './claims.js'
import type { Advert, VerifiedAdvert } from './advert.js'

export interface MemberEntry {
  readonly id: string
  readonly peerId: PeerId
  /** Newest advert seen, and its signed form for relaying in push-pull syncs. */
  advert: Advert
  signed: vmesh.v1.SignedAdvert.$Properties
  claim: Claim
  /** Local clock when the newest advert arrived; shown as its age. */
  lastAdvertAt: number
  /** Local clock when the status last changed; used to reap dead and left members. */
  statusSince: number
}

export interface StatusChange {
  id: string
  name: string
  from: MemberStatus | undefined
  to: MemberStatus
  incarnation: number
}

export interface ViewEvents {
  /** Any change visible to a person: status, resources, VMs, addresses. */
  change: []
  status: [StatusChange]
  /** A member's advert arrived for the first time or with new addresses. */
  addresses: [MemberEntry]
}

export class ClusterView extends EventEmitter<ViewEvents> {
  private readonly entries = new Map<string, MemberEntry>()

  constructor (readonly selfId: string, private readonly maxMembers: number, private readonly now: () => number = Date.now) {
    super()
  }

  get size (): number {
    return this.entries.size
  }

  get (id: string): MemberEntry | undefined {
    return this.entries.get(id)
  }

  list (): MemberEntry[] {
    return [...this.entries.values()]
  }

  /** Members in a status, excluding ourselves. */
  others (...statuses: MemberStatus[]): MemberEntry[] {
    return this.list().filter((e) => e.id !== this.selfId && statuses.includes(e.claim.status))
  }

  /**
   * Merges a verified advert. The advert is also the member's own "alive" claim at its
   * incarnation. Returns false if the view is full and this is a new member.
   */
  applyAdvert (v: VerifiedAdvert): boolean {
    const id = v.peerId.toString()
    const now = this.now()
    const current = this.entries.get(id)
    if (current === undefined) {
      if (this.entries.size >= this.maxMembers) return false
      const entry: MemberEntry = {
        id,
        peerId: v.peerId,
        advert: v.advert,
        signed: v.signed,
        claim: { status: 'alive', incarnation: v.advert.incarnation },
        lastAdvertAt: now,
        statusSince: now
      }
      this.entries.set(id, entry)
      this.emit('addresses', entry)
      this.emit('status', { id, name: v.advert.name, from: undefined, to: 'alive', incarnation: entry.claim.incarnation })
      this.emit('change')
      return true
    }
    const newer = v.advert.incarnation > current.advert.incarnation ||
      (v.advert.incarnation === current.advert.incarnation && v.advert.seq > current.advert.seq)
    if (newer) {
      const addrsChanged = !sameAddrs(current.advert.addrs, v.advert.addrs)
      current.advert = v.advert
      current.signed = v.signed
      current.lastAdvertAt = now
      if (addrsChanged) this.emit('addresses', current)
    } else if (v.advert.incarnation === current.advert.incarnation && v.advert.seq === current.advert.seq) {
      return true
    }
    this.applyClaim(id, { status: 'alive', incarnation: v.advert.incarnation })
    if (newer) this.emit('change')
    return true
  }

  /** Applies a state claim about a known member; returns true if it changed the view. */
  applyClaim (id: string, claim: Claim): boolean {
    const entry = this.entries.get(id)
    if (entry === undefined) return false
    if (!supersedes(claim, entry.claim)) return false
    const from = entry.claim.status
    entry.claim = { ...claim }
    if (from !== claim.status) {
      entry.statusSince = this.now()
      this.emit('status', { id, name: entry.advert.name, from, to: claim.status, incarnation: claim.incarnation })
    }
    this.emit('change')
    return true
  }

  /** Forgets dead and left members after `afterMs`, so the view does not grow forever. */
  reap (afterMs: number): string[] {
    const cutoff = this.now() - afterMs
    const gone: string[] = []
    for (const e of this.entries.values()) {
      if (e.id !== this.selfId && (e.claim.status === 'dead' || e.claim.status === 'left') && e.statusSince < cutoff) {
        this.entries.delete(e.id)
        gone.push(e.id)
      }
    }
    if (gone.length > 0) this.emit('change')
    return gone
  }
}

function sameAddrs (a: Uint8Array[], b: Uint8Array[]): boolean {
  if (a.length !== b.length) return false
  return a.every((x, i) => Buffer.compare(x, b[i] as Uint8Array) === 0)
}
