// Membership glues SWIM to libp2p: adverts and state claims on gossipsub (StrictSign), push-pull
// sync on every new outbound connection, direct probes by libp2p ping and indirect probes over
// /vmesh/probe/1.0.0, Lifeguard suspicion, refutation and graceful leave.
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Multiaddr } from '@multiformats/multiaddr'
import { pb, streamChannel } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import { signAdvert, verifyAdvert, ADVERT_VERSION } from './advert.js'
import { advertChanged, type AdvertSnapshot } from './advert-schedule.js'
import { Awareness } from './awareness.js'
import type { Claim, MemberStatus } from './claims.js'
import type { MeshConfig } from './config.js'
import { Counters } from './counters.js'
import { FailureDetector } from './failure-detector.js'
import { saveIncarnation } from './incarnation.js'
import type { MeshNode } from './node.js'
import { peerIdFromBytes, peerIdToBytes } from './peer-ids.js'
import type { ResourceSampler, Resources } from './resources.js'
import { Suspicion, suspicionMinMs } from './suspicion.js'
import { ClusterView } from './view.js'
import type { MemberEntry } from './view.js'

export const ADVERT_TOPIC = 'vmesh/adverts/1'
export const MEMBER_TOPIC = 'vmesh/members/1'
export const SYNC_PROTOCOL = '/vmesh/sync/1.0.0'
export const PROBE_PROTOCOL = '/vmesh/probe/1.0.0'
export const MESH_TOPICS = [ADVERT_TOPIC, MEMBER_TOPIC]

/** A sync carries the whole view; 4096 members of ~1 KiB adverts fit in 8 MiB. */
const MAX_SYNC_BYTES = 8 * 1024 * 1024
const PROBE_REQUEST_MAX_BYTES = 512
const STREAM_TIMEOUT_MS = 5000
/** How far ahead of a member's advertised incarnation a claim about it may be. */
const MAX_INCARNATION_LEAD = 16

export interface AdvertExtras {
  vms: vmesh.v1.VmSummary.$Properties[]
  images: Uint8Array[]
  /** Reservations that reduce what the host can offer, added to the sampled resources. */
  vcpusReserved?: number
  memReservedMib?: number
}

export interface MembershipOptions {
  node: MeshNode
  privateKey: PrivateKey
  name: string
  dataDir: string
  config: MeshConfig
  resources: ResourceSampler
  /** The incarnation to start with: higher than any earlier run's. */
  incarnation: number
  agentVersion: string
  extras?: () => AdvertExtras
  log?: (level: 'debug' | 'info' | 'warn', msg: string) => void
}

const toStatus: Record<number, MemberStatus | undefined> = {
  [pb.MemberState.ALIVE]: 'alive',
  [pb.MemberState.SUSPECT]: 'suspect',
  [pb.MemberState.DEAD]: 'dead',
  [pb.MemberState.LEFT]: 'left'
}
export const toMemberState: Record<MemberStatus, vmesh.v1.MemberState> = {
  alive: pb.MemberState.ALIVE,
  suspect: pb.MemberState.SUSPECT,
  dead: pb.MemberState.DEAD,
  left: pb.MemberState.LEFT
}

export class Membership {
  readonly view: ClusterView
  readonly counters = new Counters()
  readonly selfId: string
  private incarnation: number
  private seq = 0
  private resources: Resources | undefined
  private leaving = false
  private stopped = false
  private readonly suspicions = new Map<string, Suspicion>()
  private readonly awareness = new Awareness()
  private readonly detector: FailureDetector
  private readonly timers: NodeJS.Timeout[] = []
  private advertQueued: NodeJS.Timeout | undefined
  /** What the last advert published said, and when: the periodic tick skips adverts that would say nothing new. */
  private lastAdvert: AdvertSnapshot | undefined
  private lastAdvertAt = 0
  private readonly dialing = new Set<string>()
  /** When we last told a member it was declared dead, to tell it at most every 2 s. */
  private readonly toldDeadAt = new Map<string, number>()

  constructor (private readonly opts: MembershipOptions) {
    this.selfId = opts.node.peerId.toString()
    this.incarnation = opts.incarnation
    this.view = new ClusterView(this.selfId, opts.config.maxMembers)
    this.detector = new FailureDetector(opts.config, {
      candidates: () => this.view.others('alive', 'suspect').map((e) => e.id),
      ping: async (id, timeoutMs) => await this.ping(id, timeoutMs),
      pingVia: async (helper, target, timeoutMs) => await this.pingVia(helper, target, timeoutMs),
      suspect: (id) => { this.suspectLocally(id) }
    }, this.awareness)
    this.view.on('status', (c) => {
      const level = c.to === 'alive' ? 'info' : 'warn'
      if (c.id !== this.selfId) this.log(level, `member ${c.name} (${short(c.id)}) ${c.from ?? 'new'} -> ${c.to} at incarnation ${c.incarnation}`)
      if (c.to !== 'suspect') this.cancelSuspicion(c.id)
    })
    this.view.on('addresses', (entry) => { void this.learnAddresses(entry) })
  }

  get currentIncarnation (): number {
    return this.incarnation
  }

  get health (): number {
    return this.awareness.health
  }

  async start (): Promise<void> {
    const { node, config } = this.opts
    const pubsub = node.services.pubsub
    pubsub.topicValidators.set(ADVERT_TOPIC, async (_from, msg) => await this.onAdvertMessage(msg))
    pubsub.topicValidators.set(MEMBER_TOPIC, async (_from, msg) => await this.onMemberMessage(msg))
    pubsub.subscribe(ADVERT_TOPIC)
    pubsub.subscribe(MEMBER_TOPIC)
    // A peer that just subscribed to adverts is new to the gossip mesh: advertise now. For a
    // joining agent this is the moment its own advert can first travel (published earlier, it
    // had no topic peers to go to); for the others it costs one advert per join.
    pubsub.addEventListener('subscription-change', (evt) => {
      if (evt.detail.subscriptions.some((sub) => sub.topic === ADVERT_TOPIC && sub.subscribe)) this.advertiseSoon()
    })
    await node.handle(SYNC_PROTOCOL, (stream, conn) => { void this.answerSync(stream, conn) }, { maxInboundStreams: 32 })
    await node.handle(PROBE_PROTOCOL, (stream) => { void this.answerProbe(stream) }, { maxInboundStreams: 64 })
    node.addEventListener('connection:open', (evt) => {
      const conn = evt.detail
      if (conn.direction === 'outbound') void this.initiateSync(conn)
    })
    node.addEventListener('peer:disconnect', (evt) => {
      const id = evt.detail.toString()
      const entry = this.view.get(id)
      // A dropped connection is a strong hint (a killed process resets its sockets): probe now.
      if (entry !== undefined && entry.claim.status === 'alive' && !this.stopped) this.detector.probeNow(id)
    })
    this.resources = await this.opts.resources.sample()
    await saveIncarnation(this.opts.dataDir, this.incarnation)
    await this.publishAdvert()
    this.every(config.advertIntervalMs, () => { void this.publishAdvert('if-changed'); this.connectToMembers() })
    this.every(config.pushPullIntervalMs, () => { void this.syncWithRandomMember() })
    this.every(config.resourceSampleMs, () => { void this.opts.resources.sample().then((r) => { this.resources = r }) })
    this.every(Math.min(config.reapAfterMs, 60_000), () => { this.view.reap(config.reapAfterMs) })
    this.detector.start()
  }

  /**
   * Dials bootstrap addresses; the push-pull sync on each connection brings in the whole view.
   * While this agent knows no other member it keeps retrying, with backoff, so agents can start
   * in any order.
   */
  async join (bootstrap: string[]): Promise<number> {
    const joined = await this.dialBootstrap(bootstrap, 'warn')
    this.advertiseSoon()
    if (joined === 0 && bootstrap.length > 0) void this.retryBootstrap(bootstrap)
    return joined
  }

  private async dialBootstrap (bootstrap: string[], level: 'debug' | 'warn'): Promise<number> {
    let joined = 0
    await Promise.all(bootstrap.map(async (addr) => {
      try {
        await this.opts.node.dial(multiaddr(addr), { signal: AbortSignal.timeout(STREAM_TIMEOUT_MS) })
        joined++
      } catch (err) {
        this.log(level, `cannot reach bootstrap ${addr}: ${(err as Error).message}`)
      }
    }))
    return joined
  }

  private async retryBootstrap (bootstrap: string[]): Promise<void> {
    let delay = 500
    while (!this.stopped && this.view.others('alive', 'suspect').length === 0) {
      await new Promise((resolve) => setTimeout(resolve, delay).unref())
      if (this.stopped || this.view.others('alive', 'suspect').length > 0) return
      if (await this.dialBootstrap(bootstrap, 'debug') > 0) {
        this.log('info', 'reached a bootstrap peer')
        return
      }
      delay = Math.min(delay * 2, 30_000)
    }
  }

  /** Publishes a new advert soon, coalescing bursts of changes (VMs starting, reservations). */
  advertiseSoon (): void {
    if (this.advertQueued !== undefined || this.stopped) return
    this.advertQueued = setTimeout(() => {
      this.advertQueued = undefined
      void this.publishAdvert()
    }, 50)
  }

  /** Announces a graceful leave, gives gossip a moment to carry it, then stops. */
  async leave (): Promise<void> {
    if (this.leaving) return
    this.leaving = true
    this.view.applyClaim(this.selfId, { status: 'left', incarnation: this.incarnation })
    await this.publishEvent(this.opts.node.peerId, this.incarnation, 'left')
    // Also tell every connected member directly through a final sync, in case the gossip mesh
    // is still forming; then wait briefly for the frames to leave.
    await Promise.allSettled(this.opts.node.getConnections().map(async (c) => await this.initiateSync(c)))
    await new Promise((resolve) => setTimeout(resolve, 200))
    this.stop()
  }

  stop (): void {
    this.stopped = true
    this.detector.stop()
    for (const t of this.timers) clearInterval(t)
    if (this.advertQueued !== undefined) clearTimeout(this.advertQueued)
    for (const s of this.suspicions.values()) s.cancel()
    this.suspicions.clear()
  }

  // --- adverts -------------------------------------------------------------------------------

  /** Publishes this agent's advert; 'if-changed' (the periodic tick) only when advertChanged() or it is due for a refresh. */
  private async publishAdvert (when: 'now' | 'if-changed' = 'now'): Promise<void> {
    if (this.stopped || this.leaving || this.resources === undefined) return
    const extras = this.opts.extras?.() ?? { vms: [], images: [] }
    const resources: Resources = {
      ...this.resources,
      vcpusReserved: extras.vcpusReserved ?? 0,
      memReservedMib: extras.memReservedMib ?? 0
    }
    const current: AdvertSnapshot = { resources, holdings: JSON.stringify([extras.vms, extras.images]) }
    const due = Date.now() - this.lastAdvertAt >= this.opts.config.advertRefreshMs
    if (when === 'if-changed' && !due && !advertChanged(this.lastAdvert, current)) return
    this.lastAdvert = current
    this.lastAdvertAt = Date.now()
    const advert: vmesh.v1.Advert.$Properties = {
      version: ADVERT_VERSION,
      peerId: peerIdToBytes(this.opts.node.peerId),
      name: this.opts.name,
      addrs: this.listenAddrs().map((a) => a.bytes),
      incarnation: this.incarnation,
      seq: ++this.seq,
      sentAtMs: Date.now(),
      resources,
      vms: extras.vms,
      images: extras.images,
      agentVersion: this.opts.agentVersion
    }
    const signed = await signAdvert(this.opts.privateKey, advert)
    const verified = await verifyAdvert(signed)
    this.view.applyAdvert(verified)
    await this.publish(ADVERT_TOPIC, pb.SignedAdvert.encode(signed).finish())
  }

  private listenAddrs (): Multiaddr[] {
    return this.opts.node.getMultiaddrs().map((a) => a.decapsulateCode(0x01a5 /* p2p */))
  }

  private async onAdvertMessage (msg: { type: string, from?: PeerId, data: Uint8Array }): Promise<TopicValidatorResult> {
    if (msg.type !== 'signed' || msg.from === undefined) {
      this.counters.inc('rejected.gossip.unsigned')
      return TopicValidatorResult.Reject
    }
    try {
      const signed = pb.SignedAdvert.decode(msg.data)
      const verified = await verifyAdvert(signed, msg.from)
      if (!this.view.applyAdvert(verified)) {
        this.counters.inc('rejected.advert.view_full')
        return TopicValidatorResult.Ignore
      }
      this.counters.inc('received.advert')
      this.tellIfDeclaredDead(verified.peerId.toString(), verified.advert.incarnation)
      return TopicValidatorResult.Accept
    } catch (err) {
      this.counters.inc('rejected.advert.invalid')
      this.log('debug', `rejected advert from ${short(msg.from.toString())}: ${(err as Error).message}`)
      return TopicValidatorResult.Reject
    }
  }

  // --- state claims --------------------------------------------------------------------------

  private async onMemberMessage (msg: { type: string, from?: PeerId, data: Uint8Array }): Promise<TopicValidatorResult> {
    if (msg.type !== 'signed' || msg.from === undefined) {
      this.counters.inc('rejected.gossip.unsigned')
      return TopicValidatorResult.Reject
    }
    let event: vmesh.v1.MemberEvent
    let subject: PeerId
    try {
      event = pb.MemberEvent.decode(msg.data)
      subject = peerIdFromBytes(event.subject)
      if (!Number.isSafeInteger(event.incarnation)) throw new Error('incarnation out of range')
    } catch (err) {
      this.counters.inc('rejected.member_event.invalid')
      this.log('debug', `rejected member event from ${short(msg.from.toString())}: ${(err as Error).message}`)
      return TopicValidatorResult.Reject
    }
    const status = toStatus[event.state]
    if (status === undefined || status === 'alive') {
      // "alive" is only ever said by the member itself, through its signed advert.
      this.counters.inc('rejected.member_event.invalid')
      return TopicValidatorResult.Reject
    }
    if (status === 'left' && !subject.equals(msg.from)) {
      this.counters.inc('rejected.member_event.forged_leave')
      return TopicValidatorResult.Reject
    }
    this.applyClaim(subject.toString(), { status, incarnation: event.incarnation }, msg.from.toString())
    return TopicValidatorResult.Accept
  }

  /** Applies a claim from gossip, a sync or our own detector. */
  private applyClaim (subject: string, claim: Claim, from: string): void {
    if (subject === this.selfId) {
      this.refuteIfNeeded(claim)
      return
    }
    const entry = this.view.get(subject)
    if (entry === undefined) return
    // Only a member raises its own incarnation, and others hear it through its adverts; a claim
    // far beyond what the member advertised is nonsense (or an attack that would force refutes).
    if (claim.incarnation > entry.advert.incarnation + MAX_INCARNATION_LEAD) {
      this.counters.inc('rejected.member_event.absurd_incarnation')
      return
    }
    if (claim.status === 'suspect') {
      const existing = this.suspicions.get(subject)
      if (existing !== undefined && existing.incarnation === claim.incarnation) {
        existing.confirm(from)
        return
      }
      if (this.view.applyClaim(subject, claim)) this.startSuspicion(subject, claim.incarnation, from)
      return
    }
    this.view.applyClaim(subject, claim)
  }

  private refuteIfNeeded (claim: Claim): void {
    if (this.leaving || claim.status === 'alive' || claim.incarnation < this.incarnation) return
    if (claim.incarnation > this.incarnation + MAX_INCARNATION_LEAD) {
      this.counters.inc('rejected.member_event.absurd_incarnation')
      return
    }
    this.incarnation = claim.incarnation + 1
    this.awareness.apply(1)
    this.log('warn', `refuting "${claim.status}" about this agent: incarnation now ${this.incarnation}`)
    void saveIncarnation(this.opts.dataDir, this.incarnation).catch(() => {})
    this.view.applyClaim(this.selfId, { status: 'alive', incarnation: this.incarnation })
    void this.publishAdvert()
  }

  private suspectLocally (id: string): void {
    const entry = this.view.get(id)
    if (entry === undefined || this.stopped) return
    const status = entry.claim.status
    if (status !== 'alive' && status !== 'suspect') return
    const incarnation = entry.claim.incarnation
    this.counters.inc('probe.suspected')
    this.applyClaim(id, { status: 'suspect', incarnation }, this.selfId)
    void this.publishEvent(entry.peerId, incarnation, 'suspect')
  }

  private startSuspicion (id: string, incarnation: number, from: string): void {
    this.cancelSuspicion(id)
    const { config } = this.opts
    const alive = this.view.list().filter((e) => e.claim.status === 'alive' || e.claim.status === 'suspect').length
    const min = suspicionMinMs(config.suspicionMinMs, alive)
    // The suspect and the first suspector cannot confirm: at most alive - 2 others can.
    const expected = Math.max(0, Math.min(config.suspicionExpectedConfirmations, alive - 2))
    const s = new Suspicion(incarnation, from, expected, this.awareness.scale(min), this.awareness.scale(min) * config.suspicionMaxFactor, () => {
      this.suspicions.delete(id)
      const entry = this.view.get(id)
      if (entry === undefined || entry.claim.status !== 'suspect' || entry.claim.incarnation !== incarnation) return
      this.view.applyClaim(id, { status: 'dead', incarnation })
      void this.publishEvent(entry.peerId, incarnation, 'dead')
    })
    this.suspicions.set(id, s)
  }

  private cancelSuspicion (id: string): void {
    this.suspicions.get(id)?.cancel()
    this.suspicions.delete(id)
  }

  private async publishEvent (subject: PeerId, incarnation: number, status: MemberStatus): Promise<void> {
    const data = pb.MemberEvent.encode({ subject: peerIdToBytes(subject), incarnation, state: toMemberState[status] }).finish()
    await this.publish(MEMBER_TOPIC, data)
  }

  private async publish (topic: string, data: Uint8Array): Promise<void> {
    try {
      await this.opts.node.services.pubsub.publish(topic, data)
    } catch (err) {
      this.log('debug', `publish on ${topic} failed: ${(err as Error).message}`)
    }
  }

  // --- push-pull sync ------------------------------------------------------------------------

  private syncMessage (): Uint8Array {
    const entries = this.view.list().map((e) => ({
      advert: e.signed,
      state: toMemberState[e.claim.status],
      stateIncarnation: e.claim.incarnation
    }))
    return pb.SyncMessage.encode({ entries }).finish()
  }

  /**
   * A member we hold dead is still advertising at the incarnation it died at: it missed the
   * claim. A direct sync tells it, so it refutes now instead of at the next random push-pull.
   */
  private tellIfDeclaredDead (id: string, advertIncarnation: number): void {
    const e = this.view.get(id)
    if (e === undefined || e.claim.status !== 'dead' || advertIncarnation > e.claim.incarnation) return
    const last = this.toldDeadAt.get(id) ?? 0
    if (Date.now() - last < 2000) return
    this.toldDeadAt.set(id, Date.now())
    const conn = this.opts.node.getConnections(e.peerId)[0]
    if (conn !== undefined) void this.initiateSync(conn)
  }

  /** Anti-entropy: a full push-pull with one random connected member. */
  private async syncWithRandomMember (): Promise<void> {
    const members = this.view.others('alive', 'suspect', 'dead')
    const connected = members.flatMap((e) => this.opts.node.getConnections(e.peerId).slice(0, 1))
    const conn = connected[Math.floor(Math.random() * connected.length)]
    if (conn !== undefined) await this.initiateSync(conn)
  }

  private async initiateSync (conn: Connection): Promise<void> {
    if (this.stopped && !this.leaving) return
    let stream: Stream | undefined
    try {
      stream = await conn.newStream(SYNC_PROTOCOL, { signal: AbortSignal.timeout(STREAM_TIMEOUT_MS) })
      const channel = streamChannel(stream, MAX_SYNC_BYTES)
      await channel.send(this.syncMessage())
      const reply = await channel.recv(STREAM_TIMEOUT_MS)
      if (reply !== undefined) await this.mergeSync(reply, conn.remotePeer)
      await channel.close()
    } catch (err) {
      // The remote may be a CLI client without the sync protocol, or gone already.
      stream?.abort(err as Error)
      this.log('debug', `sync with ${short(conn.remotePeer.toString())} failed: ${(err as Error).message}`)
    }
  }

  private async answerSync (stream: Stream, conn: Connection): Promise<void> {
    const channel = streamChannel(stream, MAX_SYNC_BYTES)
    try {
      const frame = await channel.recv(STREAM_TIMEOUT_MS)
      if (frame === undefined) return
      await this.mergeSync(frame, conn.remotePeer)
      await channel.send(this.syncMessage())
      await channel.close()
    } catch (err) {
      this.counters.inc('rejected.sync.stream')
      this.log('debug', `sync from ${short(conn.remotePeer.toString())} failed: ${(err as Error).message}`)
      stream.abort(err as Error)
    }
  }

  private async mergeSync (frame: Uint8Array, from: PeerId): Promise<void> {
    let sync: vmesh.v1.SyncMessage
    try {
      sync = pb.SyncMessage.decode(frame)
    } catch {
      this.counters.inc('rejected.sync.malformed')
      throw new Error('malformed sync message')
    }
    if (sync.entries.length > this.opts.config.maxMembers) {
      this.counters.inc('rejected.sync.too_many')
      throw new Error(`sync with ${sync.entries.length} entries`)
    }
    for (const entry of sync.entries) {
      if (entry.advert == null) { this.counters.inc('rejected.sync.entry'); continue }
      try {
        const id = await this.mergeRelayedAdvert(entry.advert)
        const status = toStatus[entry.state ?? 0]
        const inc = entry.stateIncarnation ?? 0
        if (status !== undefined && status !== 'alive' && Number.isSafeInteger(inc)) {
          // The sync peer is an authenticated member: its claims count like gossiped ones, and
          // claims about us are refuted.
          this.applyClaim(id, { status, incarnation: inc }, from.toString())
        }
      } catch {
        this.counters.inc('rejected.sync.entry')
      }
    }
  }

  /**
   * Merges an advert relayed in a sync. Signature checks cost ~1 ms each in JS, and a sync
   * carries the whole view, so adverts we already hold (same incarnation and seq) are not
   * verified again. Returns the member id.
   */
  private async mergeRelayedAdvert (signed: vmesh.v1.SignedAdvert.$Properties): Promise<string> {
    const bytes = signed.advert
    if (bytes != null && bytes.length > 0) {
      const peek = pb.Advert.decode(bytes)
      const id = peerIdFromBytes(peek.peerId).toString()
      if (id === this.selfId) return id
      const known = this.view.get(id)
      if (known !== undefined && (peek.incarnation < known.advert.incarnation ||
        (peek.incarnation === known.advert.incarnation && peek.seq <= known.advert.seq))) return id
    }
    const verified = await verifyAdvert(signed)
    const id = verified.peerId.toString()
    if (id !== this.selfId) this.view.applyAdvert(verified)
    return id
  }

  // --- probes --------------------------------------------------------------------------------

  private async ping (id: string, timeoutMs: number): Promise<'ok' | 'refused' | 'timeout'> {
    const entry = this.view.get(id)
    if (entry === undefined) return 'timeout'
    try {
      await this.opts.node.services.ping.ping(entry.peerId, { signal: AbortSignal.timeout(timeoutMs) })
      return 'ok'
    } catch (err) {
      return isConnectionRefused(err) ? 'refused' : 'timeout'
    }
  }

  private async pingVia (helper: string, target: string, timeoutMs: number): Promise<boolean> {
    const h = this.view.get(helper)
    const t = this.view.get(target)
    if (h === undefined || t === undefined) return false
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(timeoutMs * 2)
      stream = await this.opts.node.dialProtocol(h.peerId, PROBE_PROTOCOL, { signal })
      const channel = streamChannel(stream, PROBE_REQUEST_MAX_BYTES)
      await channel.send(pb.ProbeRequest.encode({ target: peerIdToBytes(t.peerId), timeoutMs }).finish())
      const reply = await channel.recv(timeoutMs * 2)
      await channel.close().catch(() => {})
      return reply !== undefined && pb.ProbeReply.decode(reply).ack
    } catch {
      stream?.abort(new Error('indirect probe failed'))
      return false
    }
  }

  private async answerProbe (stream: Stream): Promise<void> {
    const channel = streamChannel(stream, PROBE_REQUEST_MAX_BYTES)
    try {
      const frame = await channel.recv(STREAM_TIMEOUT_MS)
      if (frame === undefined) return
      const req = pb.ProbeRequest.decode(frame)
      const target = peerIdFromBytes(req.target)
      const timeoutMs = Math.min(Math.max(req.timeoutMs, 50), 5000)
      const ack = this.view.get(target.toString()) !== undefined && (await this.ping(target.toString(), timeoutMs)) === 'ok'
      await channel.send(pb.ProbeReply.encode({ ack }).finish())
      await channel.close()
    } catch (err) {
      this.counters.inc('rejected.probe.invalid')
      stream.abort(err as Error)
    }
  }

  // --- connectivity --------------------------------------------------------------------------

  private async learnAddresses (entry: MemberEntry): Promise<void> {
    if (entry.id === this.selfId) return
    const addrs: Multiaddr[] = []
    for (const bytes of entry.advert.addrs) {
      try { addrs.push(multiaddr(bytes)) } catch { /* bounded and checked in verifyAdvert */ }
    }
    try {
      await this.opts.node.peerStore.merge(entry.peerId, { multiaddrs: addrs })
    } catch (err) {
      this.log('debug', `peer store: ${(err as Error).message}`)
    }
    this.connect(entry)
  }

  /** Keeps a connection to every live member: the mesh is small enough to be full. */
  private connectToMembers (): void {
    for (const e of this.view.others('alive')) this.connect(e)
  }

  private connect (entry: MemberEntry): void {
    if (this.stopped || entry.claim.status !== 'alive' || this.dialing.has(entry.id)) return
    if (this.opts.node.getConnections(entry.peerId).length > 0) return
    this.dialing.add(entry.id)
    this.opts.node.dial(entry.peerId, { signal: AbortSignal.timeout(STREAM_TIMEOUT_MS) })
      .catch((err: Error) => { this.log('debug', `dial ${entry.advert.name}: ${err.message}`) })
      .finally(() => { this.dialing.delete(entry.id) })
  }

  private every (ms: number, fn: () => void): void {
    const t = setInterval(fn, ms)
    t.unref?.()
    this.timers.push(t)
  }

  private log (level: 'debug' | 'info' | 'warn', msg: string): void {
    this.opts.log?.(level, msg)
  }
}

/** True if a dial failed because the remote host reset it: nothing listens on that port. */
function isConnectionRefused (err: unknown, depth = 0): boolean {
  if (err == null || typeof err !== 'object' || depth > 4) return false
  const e = err as { code?: string, message?: string, errors?: unknown[], cause?: unknown }
  if (e.code === 'ECONNREFUSED' || (e.message ?? '').includes('ECONNREFUSED')) return true
  return (e.errors ?? []).some((x) => isConnectionRefused(x, depth + 1)) || isConnectionRefused(e.cause, depth + 1)
}

function short (id: string): string {
  return id.slice(-6)
}
