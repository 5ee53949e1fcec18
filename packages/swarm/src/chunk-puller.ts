// A target's side of a transfer: fetches every chunk of a manifest that the store lacks, over one
// link to each other participant. Rules:
//   - a chunk some other target has is fetched from that target (relay), never from a seed;
//   - from a seed we ask only for "fresh" chunks: the seed picks one that no live target holds
//     or is being sent (seed-handout.ts), so it sends each chunk about once and faster targets
//     take more; we tell seeds what we gain so they know what the swarm holds;
//   - safety net: with nothing in flight and no progress for stallFallbackMs, any missing chunk
//     may be asked of a seed by index;
//   - once the seed has handed out everything, a chunk asked of a relay that has not begun to
//     send it for SwarmConfig.relayWaitMs may be asked of the seed too, within
//     SwarmConfig.stalledRelayFraction.
// Seed links open as soon as the pull exists (openSeedLinks), overlapping the ready/plan round
// trip; the rest open at start(), once every target holds the manifest, and nothing is requested
// before it. Requests are pipelined (perLinkInflight per link, spread breadth-first over the
// links: request-spread.ts); a reply is checked against its hash before this host stores or uses
// it, and passed on while it arrives only piece by checked piece (partial-chunks.ts); a link that
// fails is dropped, its requests re-queued, and it is re-opened after relinkDelayMs (the peer may
// have restarted).
import type { Connection, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { streamChannel, type MessageChannel } from '@vmesh/wire'
import { PIECE_SIZE, piecesDigest, sha256, sha256Bytes, type ChunkHold, type ChunkInfo } from '@vmesh/store'
import { DurableQueue } from './durable-queue.js'
import { HaveBatch } from './have-batch.js'
import { Bitfield } from './bitfield.js'
import { acceptBulkOffer } from './bulk-offer.js'
import type { BulkChannel } from './bulk-channel.js'
import { encodeRequest, readReplyParts } from './chunk-wire.js'
import { PartialChunk } from './partial-chunks.js'
import { spreadRequests } from './request-spread.js'
import { CHUNK_PROTOCOL, checkChunkCount, checkIndices, decodeHave, decodeLinkFrame, encodeLink, openTimeout, SWARM_VERSION, SwarmProtocolError, swarmLimits } from './swarm-protocol.js'
import type { ManifestInfo, SwarmContext } from './swarm-context.js'

export interface PullPeer {
  id: string
  peerId: PeerId
  name: string
  seed: boolean
  addrs: Multiaddr[]
}

const LINK_TIMEOUT_MS = 10_000
/** An in-flight entry that a seed fills with a chunk of its choosing. */
const FRESH = -1
/** After a seed said it has nothing fresh, ask again this much later (a target may have died). */
const FRESH_RETRY_MS = 300
/** A link with requests outstanding and no reply for this long is taken for dead and re-opened. */
const LINK_SILENCE_MS = 15_000

/** A chunk whose reply is arriving on a link. */
interface Arrival {
  index: number
  chunk: PartialChunk
  /** A live push's chunk that came before its name (kept aside, see announced()). */
  early: boolean
  /** Registered in ctx.partials: this agent's servers may be passing it on. */
  served: boolean
  /** Broke off (see abandon), which happens once. */
  abandoned: boolean
}

/** An arrival that is only gathered, whole, for its receiver to check (nothing passes it on). */
function wholeArrival (index: number, size: number, early: boolean): Arrival {
  return { index, chunk: new PartialChunk(size, size, () => true), early, served: false, abandoned: false }
}

class Link {
  state: 'idle' | 'opening' | 'open' | 'down' = 'idle'
  have: Bitfield
  /** Indices requested and not yet answered, in request order (the server answers in order). */
  inflight: number[] = []
  /** Seeds: our have-updates for them (batched: the hand-out needs them soon, not at once), and when to ask for fresh chunks again after a "none". */
  haves: HaveBatch | undefined
  freshAfter = 0
  /** When the last reply or part of one arrived (or the first request went out after a quiet spell). */
  lastReplyAt = 0
  /** A reply's bytes are arriving (its request is no longer in inflight). */
  arriving = false
  bulk: BulkChannel | undefined
  ch: MessageChannel | undefined
  failures = 0
  /** The seed that hands out chunks (fresh requests); see ChunkPull's constructor. */
  primary = false
  /** The primary seed answered "none": it has handed out every chunk, its upload is idle. */
  exhausted = false
  /** The open's timeout, cleared once the peer answered (see openTimeout). */
  opening: { clear: () => void } | undefined

  constructor (readonly peer: PullPeer, count: number) {
    this.have = new Bitfield(count)
  }
}

export class ChunkPull {
  /** Chunks held (at start or since). */
  readonly have: Bitfield
  /** A live push's chunks that arrived before their announce (see readReplies below). */
  private readonly early = new Map<number, { link: Link, arrival: Arrival }>()
  bytesDone = 0
  bytesFetched = 0
  bytesTotal: number
  /** Chunks of the table held (a live push's table grows: see announced()). */
  private heldCount = 0
  /** A live push's chunks are in no saved manifest until it is sealed: kept from GC until the end. */
  private readonly gcHold: ChunkHold | undefined
  /** What happened, for the log line at the end: chunks from seeds and relays, seeds' "none" answers, stalls. */
  readonly stats = { fromSeeds: 0, fromRelays: 0, none: 0, pastStall: 0, stalls: 0, corrupt: 0, linkFailures: 0, writeWaitMs: 0, startMs: -1, seedLinkMs: -1, firstChunkMs: -1 }
  private readonly createdAt = Date.now()
  private todo: number[] = []
  private heldSinceCompact = 0
  private readonly requested = new Set<number>()
  /** Chunks whose reply has begun to arrive, until verified and queued (also in requested). */
  private readonly receiving = new Set<number>()
  private readonly links: Link[] = []
  /** Verified chunks on their way to disk. */
  readonly durable: DurableQueue
  /** Set once every chunk arrived: the final flush is running. */
  private flushing = false
  private lastProgressAt = Date.now()
  private scheduled = false
  private finished = false
  private failure: Error | undefined
  private readonly timers = new Set<NodeJS.Timeout>()
  private tick: NodeJS.Timeout | undefined
  private resolveDone!: () => void
  private rejectDone!: (e: Error) => void
  readonly done: Promise<void>
  private rotate = 0
  private started = false
  private readonly extraSeeds: boolean
  /** Fresh requests kept at the handing-out seed (see SwarmConfig.seedQueueChunks). */
  private readonly seedInflight: number
  /** Chunks this puller may still ask the idle seed for, past a stalled relay (SwarmConfig.stalledRelayFraction). */
  private stallBudget: number
  /** Chunks already asked of the seed that way (never twice). */
  private readonly askedPastStall = new Set<number>()
  /** When each chunk was last asked of a relay (read only for requests still waiting there). */
  private readonly askedAt = new Map<number, number>()
  /** Wakes fill() when the oldest request waiting at a relay passes relayWaitMs. */
  private pastStallTimer: NodeJS.Timeout | undefined

  constructor (private readonly ctx: SwarmContext, readonly info: ManifestInfo, peers: PullPeer[], private readonly sessionId: Uint8Array,
    private readonly onChunk?: (manifestId: string, hash: string, data: Uint8Array) => void) {
    const n = info.capacity
    this.have = new Bitfield(n)
    this.gcHold = info.liveSession !== undefined ? ctx.store.hold() : undefined
    this.bytesTotal = 0
    this.addChunks(0)
    for (const p of peers) if (p.id !== ctx.selfId) this.links.push(new Link(p, n))
    // The first seed (the pushing host when it holds the image) hands chunks out; other seeds
    // (hosts that already hold the whole image) are asked for chunks by index, like targets, so
    // two seeds never send this target the same chunk.
    const primary = this.links.find((l) => l.peer.seed)
    if (primary !== undefined) primary.primary = true
    this.extraSeeds = this.links.some((l) => l.peer.seed && !l.primary)
    const targets = 1 + this.links.filter((l) => !l.peer.seed).length
    this.seedInflight = Math.max(1, Math.ceil(ctx.config.seedQueueChunks / targets))
    this.stallBudget = info.liveSession !== undefined ? 0 : Math.ceil(ctx.config.stalledRelayFraction * info.chunks.length / targets)
    this.durable = new DurableQueue(ctx, ctx.config.maxUnwrittenBytes)
    this.done = new Promise<void>((resolve, reject) => { this.resolveDone = resolve; this.rejectDone = reject })
    this.done.catch(() => {})
  }

  get complete (): boolean {
    return this.info.sealed && this.heldCount === this.info.chunks.length
  }

  /** Chunks from index `from` on are new in the table: held already, or to fetch. */
  private addChunks (from: number): void {
    const { info, ctx } = this
    const fresh: number[] = []
    for (let i = from; i < info.chunks.length; i++) {
      const c = info.chunks[i] as { hash: string, size: number }
      this.bytesTotal += c.size
      if (ctx.store.has(c.hash) || ctx.pending.has(c.hash)) {
        this.gcHold?.add(c.hash)
        if (this.have.set(i)) { this.heldCount++; this.bytesDone += c.size }
      } else fresh.push(i)
    }
    // What the seeds hand out first, relays are asked for first too (see ManifestInfo.first).
    const first = new Set(info.first)
    this.todo.push(...fresh.filter((i) => first.has(i)), ...fresh.filter((i) => !first.has(i)))
  }

  /**
   * A live push's table grew (announced chunks from index `from` on) or was sealed: fetch what
   * is new, and finish if that was all.
   */
  announced (from: number): void {
    if (this.finished) return
    this.addChunks(from)
    // A live seed answers "none" when it has handed out every chunk named so far (at a clone's
    // start the snapshot names chunks more slowly than targets ask): ask again now that new ones
    // have names, not FRESH_RETRY_MS after the "none".
    for (const l of this.links) l.freshAfter = 0
    for (const [index, e] of this.early) {
      if (index >= this.info.chunks.length) continue
      this.early.delete(index)
      void this.take(e.link, e.arrival)
    }
    if (this.started && !this.checkDone()) this.schedule()
  }

  /** Whether it finished or was stopped. */
  get settled (): boolean {
    return this.finished
  }

  /** Whether start() was called. */
  get isStarted (): boolean {
    return this.started
  }

  /**
   * Opens the links to the seeds ahead of the plan (they hold the manifest already; other
   * targets may not have it yet), so the first requests go out as soon as the plan comes.
   * Nothing is requested before start().
   */
  openSeedLinks (): void {
    if (this.started || this.finished || this.complete) return
    for (const l of this.links) if (l.peer.seed) void this.open(l)
  }

  /** Starts fetching (after the plan arrived); later calls do nothing. */
  start (): void {
    if (this.started) return
    this.started = true
    this.stats.startMs = Date.now() - this.createdAt
    // The wait for the plan (the slowest target's ready) is no stall: count from the go.
    this.lastProgressAt = Date.now()
    if (this.checkDone()) return
    for (const l of this.links) void this.open(l)
    // Seed links opened ahead of the plan get their first requests now.
    this.schedule()
    this.tick = setInterval(() => this.check(), 500)
  }

  /** Stops at once; done rejects with `reason`. */
  stop (reason: Error): void {
    if (this.finished) return
    this.failure = reason
    this.finish()
    void this.durable.abort()
    this.rejectDone(reason)
  }

  private finish (): void {
    this.finished = true
    this.gcHold?.release()
    if (this.tick !== undefined) clearInterval(this.tick)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    for (const l of this.links) void this.closeLink(l)
  }

  /** Done once every chunk arrived verified and the last of them is durable in the store. */
  private checkDone (): boolean {
    if (this.finished || this.flushing) return true
    if (!this.complete) return false
    this.flushing = true
    this.durable.flush().then(() => {
      if (this.finished) return
      this.finish()
      this.resolveDone()
    }, (err: Error) => this.stop(err))
    return true
  }

  /**
   * Every 500 ms: drop links that stopped answering (their requests go elsewhere), and rebuild
   * `requested` from what is really outstanding, so no chunk can stay marked as requested after
   * the request was lost.
   */
  private check (): void {
    if (this.finished) return
    const now = Date.now()
    for (const l of this.links) {
      // A reply whose bytes stopped coming counts too: its chunk is in `receiving`, asked of no one else.
      if (l.state === 'open' && (l.inflight.length > 0 || l.arriving) && now - l.lastReplyAt > LINK_SILENCE_MS) {
        this.linkDown(l, new Error(`no reply for ${LINK_SILENCE_MS / 1000} s with ${l.inflight.length} request(s) outstanding${l.arriving ? ' and a reply half in' : ''}`))
      }
    }
    this.requested.clear()
    for (const i of this.receiving) this.requested.add(i)
    for (const l of this.links) for (const i of l.inflight) if (i !== FRESH) this.requested.add(i)
    this.schedule()
  }

  // --- links ---------------------------------------------------------------------------------

  private async open (link: Link): Promise<void> {
    if (this.finished || link.state === 'opening' || link.state === 'open') return
    link.state = 'opening'
    const { ctx, info } = this
    try {
      // The addresses are for dialling a peer not yet connected; a peer-store write per link costs (64 at N=8).
      if (link.peer.addrs.length > 0 && ctx.node.getConnections(link.peer.peerId).length === 0) await ctx.node.peerStore.merge(link.peer.peerId, { multiaddrs: link.peer.addrs }).catch(() => {})
      const opening = openTimeout(LINK_TIMEOUT_MS)
      link.opening = opening
      const conn: Connection = await ctx.node.dial(link.peer.peerId, { signal: opening.signal })
      const stream = await conn.newStream(CHUNK_PROTOCOL, { signal: opening.signal })
      const ch = streamChannel(stream, swarmLimits.linkFrameBytes)
      link.ch = ch
      const live = info.liveSession !== undefined
      await ch.send(encodeLink({ open: { version: SWARM_VERSION, manifestId: live ? new Uint8Array(0) : Buffer.from(info.id, 'hex'), sessionId: this.sessionId, have: this.have.encode(), live } }))
      const frame = await ch.recv(LINK_TIMEOUT_MS)
      opening.clear()
      if (frame === undefined) throw new Error('the peer closed the link without answering')
      const f = decodeLinkFrame(frame)
      if (f.body === 'error' && f.error != null) throw new Error(`${f.error.code}: ${(f.error.message ?? '').slice(0, swarmLimits.maxErrorChars)}`)
      const accept = f.accept
      if (f.body !== 'accept' || accept == null) throw new SwarmProtocolError('link_accept', `expected accept, got ${f.body ?? 'nothing'}`)
      if (checkChunkCount(accept.chunkCount ?? 0) !== info.capacity) throw new SwarmProtocolError('chunk_count', `peer counts ${accept.chunkCount} chunks, the manifest has ${info.capacity}`)
      link.have = decodeHave(accept.have ?? new Uint8Array(0), info.capacity)
      link.bulk = await acceptBulkOffer(accept.bulkOffer ?? new Uint8Array(0), { localPeer: ctx.selfId, remotePeer: link.peer.id, host: ipOf(conn.remoteAddr) })
      if (this.finished) { void this.closeLink(link); return }
      link.state = 'open'
      if (link.primary && this.stats.seedLinkMs < 0) this.stats.seedLinkMs = Date.now() - this.createdAt
      link.failures = 0
      // (linkDown and closeLink stopped any earlier batch)
      if (link.peer.seed) link.haves = new HaveBatch(async (indices) => await ch.send(encodeLink({ have: { indices } })), ctx.config.haveBatchMs, swarmLimits.maxHaveUpdate)
      link.freshAfter = 0
      void this.readHaves(link, ch)
      void this.readReplies(link, link.bulk)
      this.schedule()
    } catch (err) {
      this.linkDown(link, err as Error)
    }
  }

  private linkDown (link: Link, err: Error): void {
    if (link.state === 'down' || link.state === 'idle') return
    const wasOpen = link.state === 'open'
    link.state = 'down'
    link.opening?.clear()
    for (const i of link.inflight) this.requested.delete(i)
    link.inflight = []
    link.arriving = false
    link.bulk?.destroy()
    link.bulk = undefined
    link.ch?.abort(err)
    link.ch = undefined
    link.haves?.stop()
    link.haves = undefined
    if (err instanceof SwarmProtocolError) this.ctx.counters.inc(`swarm.rejected.pull.${err.reason}`)
    if (this.finished) return
    link.failures++
    this.stats.linkFailures++
    this.ctx.log.debug(`swarm ${this.info.id.slice(0, 12)}: link to ${link.peer.name || link.peer.id} ${wasOpen ? 'failed' : 'did not open'}: ${err.message}`)
    const t = setTimeout(() => { this.timers.delete(t); void this.open(link) }, this.ctx.config.relinkDelayMs * Math.min(link.failures, 5))
    this.timers.add(t)
    this.schedule()
  }

  private async closeLink (link: Link): Promise<void> {
    const { bulk, ch } = link
    const graceful = link.state === 'open' && this.failure === undefined
    link.state = 'idle'
    link.bulk = undefined
    link.ch = undefined
    link.haves?.stop()
    link.haves = undefined
    if (bulk !== undefined) {
      if (graceful) await bulk.end().catch(() => bulk.destroy())
      else bulk.destroy()
    }
    if (ch !== undefined) {
      if (graceful) await ch.close().catch(() => {})
      else ch.abort(this.failure ?? new Error('pull finished'))
    }
  }

  private async readHaves (link: Link, ch: MessageChannel): Promise<void> {
    try {
      for (;;) {
        const frame = await ch.recv()
        if (frame === undefined) break
        const f = decodeLinkFrame(frame)
        if (f.body !== 'have' || f.have == null) throw new SwarmProtocolError('link_frame', `unexpected ${f.body ?? 'empty'} frame on an open link`)
        for (const i of checkIndices(f.have.indices ?? [], this.info.capacity, swarmLimits.maxHaveUpdate, 'have update')) link.have.set(i)
        this.schedule()
      }
      if (link.ch === ch && link.state === 'open' && !this.finished) this.linkDown(link, new Error('the peer closed the link'))
    } catch (err) {
      if (link.ch === ch && !this.finished) this.linkDown(link, err as Error)
    }
  }

  private async readReplies (link: Link, bulk: BulkChannel): Promise<void> {
    const { info, ctx } = this
    /** The reply whose bytes are arriving. */
    let arrival: Arrival | undefined
    try {
      for await (const r of readReplyParts(bulk, info.maxChunkBytes)) {
        // A reader of a link that was since dropped (and maybe re-opened) must not touch it.
        if (link.bulk !== bulk) { if (arrival !== undefined) this.abandon(arrival, new Error('the link was dropped')); return }
        link.lastReplyAt = Date.now()
        if (r.kind === 'body') {
          const a = arrival as Arrival
          // Within the download cap, piece by piece (a relay may be passing these on already).
          await ctx.download.take(r.data.length)
          a.chunk.append(r.data)
          if (!r.last) continue
          arrival = undefined
          link.arriving = false
          if (a.early) {
            // A live push: the chunk overtook its name, which comes on the (slower) session
            // stream. Kept, unverified and unused, until announced() can check it.
            this.early.set(a.index, { link, arrival: a })
            continue
          }
          await this.take(link, a)
          continue
        }
        const expected = link.inflight.shift()
        if (expected === FRESH) {
          if (r.none) {
            this.stats.none++
            link.exhausted = true
            link.freshAfter = Date.now() + FRESH_RETRY_MS
            this.schedule()
            continue
          }
          if (!(r.index >= 0 && r.index < info.capacity)) throw new SwarmProtocolError('bulk_reply', `seed sent chunk ${r.index}, outside 0..${info.capacity - 1}`)
          if (!r.missing) this.requested.add(r.index)
          if (!r.missing && r.index >= info.chunks.length) {
            if (this.early.size >= this.ctx.config.maxInflight) throw new SwarmProtocolError('bulk_reply', `seed sent ${this.early.size + 1} chunks not announced yet`)
            this.receiving.add(r.index)
            arrival = wholeArrival(r.index, r.size, true)
            link.arriving = true
            continue
          }
        } else if (expected !== r.index || r.none) {
          throw new SwarmProtocolError('bulk_order', `peer answered chunk ${r.index}, expected ${expected ?? 'nothing'}`)
        }
        if (r.missing) {
          link.have.clear(r.index)
          this.requested.delete(r.index)
          this.schedule()
          continue
        }
        this.receiving.add(r.index)
        arrival = this.begin(link, r.index, r.size, r.pieceHashes)
        link.arriving = true
      }
    } catch (err) {
      if (arrival !== undefined) this.abandon(arrival, err as Error)
      if (link.bulk === bulk && !this.finished) this.linkDown(link, err as Error)
    }
  }

  /**
   * A chunk's reply began: its bytes are gathered here. A reply that gives piece hashes for a
   * chunk with a pieces digest (a seed's hand-out; with cutThrough 2 a relay's reply too): once
   * they match the digest, this agent's servers may pass each piece on as it arrives and checks
   * out (cut-through: a relay's peers need not wait for the whole chunk).
   */
  private begin (link: Link, index: number, size: number, pieceHashes: Uint8Array[]): Arrival {
    const { ctx, info } = this
    const chunk = info.chunks[index] as ChunkInfo
    const whole = (): Arrival => wholeArrival(index, size, false)
    const from = link.peer.seed ? 1 : 2
    if (ctx.config.cutThrough < from || pieceHashes.length === 0 || chunk.pieces === undefined || this.have.has(index)) return whole()
    // Already whole here (another pull of it): servers send that copy.
    if (ctx.pending.has(chunk.hash) || ctx.store.has(chunk.hash) || ctx.partials.has(chunk.hash)) return whole()
    if (piecesDigest(pieceHashes) !== chunk.pieces) {
      // Not what the manifest says: receive it whole, checked by its hash alone.
      ctx.counters.inc('swarm.rejected.piece_hashes')
      return whole()
    }
    let a: Arrival | undefined
    const partial = new PartialChunk(size, PIECE_SIZE, (k, bytes) => sha256Bytes(bytes).equals(pieceHashes[k] as Uint8Array), pieceHashes, chunk.pieces, () => {
      // A piece that does not match the hashes its sender gave: none of it goes on; the whole
      // chunk is still checked by its hash when it is in.
      ctx.counters.inc('swarm.rejected.corrupt_piece')
      if (a !== undefined) this.unserve(a)
    })
    if (!ctx.partials.begin(chunk.hash, partial)) return whole()
    a = { index, chunk: partial, early: false, served: true, abandoned: false }
    ctx.hub.emit('receiving', info.id, index, link.peer.seed)
    return a
  }

  /** A chunk's reply broke off (its link failed): fail its readers and let it be asked again. */
  private abandon (a: Arrival, err: Error): void {
    if (a.abandoned) return
    a.abandoned = true
    a.chunk.fail(err)
    this.unserve(a)
    this.receiving.delete(a.index)
    this.requested.delete(a.index)
  }

  /** This agent's servers stop passing the chunk on (readers already sending it fail). */
  private unserve (a: Arrival): void {
    if (!a.served) return
    a.served = false
    this.ctx.partials.end((this.info.chunks[a.index] as ChunkInfo).hash, a.chunk)
  }

  /** A chunk's bytes from a link are all in: received(), then fetch on. */
  private async take (link: Link, a: Arrival): Promise<void> {
    const { index } = a
    if (this.stats.firstChunkMs < 0) this.stats.firstChunkMs = Date.now() - this.createdAt
    if (link.peer.seed) this.stats.fromSeeds++
    else this.stats.fromRelays++
    try {
      await this.received(link, index, a.chunk.data)
    } finally {
      if (!this.have.has(index)) a.chunk.fail(new Error('the chunk did not match its hash'))
      else if (a.served) this.ctx.pieceHashes.add((this.info.chunks[index] as ChunkInfo).hash, a.chunk.piecesDigest, a.chunk.pieceHashes)
      this.unserve(a)
    }
    if (!this.checkDone()) this.schedule()
  }

  /**
   * A chunk arrived: verified against its hash here (never stored or used otherwise; only its
   * checked pieces may have been passed on while it arrived), then
   * servable at once from memory and queued for a batched durable write; waits while the writes
   * lag too far behind (the disk is then the bottleneck, and TCP backpressure tells the senders).
   */
  private async received (link: Link, index: number, data: Buffer): Promise<void> {
    const { ctx, info } = this
    const chunk = info.chunks[index] as { hash: string, size: number }
    try {
      if (data.length !== chunk.size || sha256(data) !== chunk.hash) {
        // The peer sent bytes that do not match: never use them, ask someone else.
        ctx.counters.inc('swarm.rejected.corrupt_chunk')
        this.stats.corrupt++
        link.have.clear(index)
        return
      }
      if (this.have.has(index)) return
      const waitFrom = Date.now()
      this.gcHold?.add(chunk.hash)
      await this.durable.add(chunk.hash, data)
      this.stats.writeWaitMs += Date.now() - waitFrom
      if (this.have.set(index)) {
        this.heldCount++
        this.bytesDone += chunk.size
        this.bytesFetched += chunk.size
        this.heldSinceCompact++
        ctx.counters.inc('swarm.fetched_bytes', chunk.size)
      }
      ctx.cache.addVerified(chunk.hash, data)
      // A copy of it still arriving elsewhere (asked past a stalled relay) is served no more: this one is whole.
      const other = ctx.partials.get(chunk.hash)
      if (other !== undefined && other.data !== data) ctx.partials.end(chunk.hash, other)
      // A live push's chunks have no manifest to name until it is sealed (see sealLivePull).
      if (info.sealed) this.onChunk?.(info.manifestId, chunk.hash, data)
      this.lastProgressAt = Date.now()
      ctx.hub.emit('gained', info.id, index, link.peer.seed)
      this.tellSeeds(index)
    } catch (err) {
      this.stop(err as Error)
    } finally {
      this.requested.delete(index)
      this.receiving.delete(index)
    }
  }

  /** Seeds hand out chunks by what the swarm holds: tell them what we gained (batched). */
  private tellSeeds (index: number): void {
    for (const l of this.links) {
      if (!l.peer.seed || l.state !== 'open') continue
      l.haves?.add(index, false)
    }
  }

  // --- scheduling ----------------------------------------------------------------------------

  private schedule (): void {
    if (this.scheduled || this.finished) return
    this.scheduled = true
    queueMicrotask(() => {
      this.scheduled = false
      this.fill()
    })
  }

  private fill (): void {
    if (this.finished || !this.started) return
    const { config } = this.ctx
    if (this.heldSinceCompact > 32) {
      this.todo = this.todo.filter((i) => !this.have.has(i))
      this.heldSinceCompact = 0
    }
    let total = this.links.reduce((n, l) => n + l.inflight.length, 0)
    const stalled = total === 0 && !this.flushing && Date.now() - this.lastProgressAt > config.stallFallbackMs
    // Relays first (their chunks cost the seeds nothing), starting at a rotating link.
    const open = this.links.filter((l) => l.state === 'open')
    const start = this.rotate++ % Math.max(1, open.length)
    const ordered = [...open.slice(start), ...open.slice(0, start)].sort((a, b) => Number(a.peer.seed) - Number(b.peer.seed))
    const now = Date.now()
    // Chunks we still need from anyone, beyond what is already requested: bounds fresh asks.
    let unrequested = this.todo.reduce((n, i) => (this.have.has(i) || this.requested.has(i) ? n : n + 1), 0)
    // Links asked by index (relays; seeds only as the stall fallback), breadth-first.
    const byIndex = ordered.filter((l) => !l.primary || stalled)
    const batches = spreadRequests(byIndex, (l) => l.inflight.length, config.perLinkInflight, Math.min(config.maxInflight - total, unrequested), (l) => {
      const i = this.pick(l, open)
      if (i !== undefined) this.requested.add(i)
      return i
    })
    for (const b of batches.values()) { total += b.length; unrequested -= b.length }
    for (const link of ordered) {
      const batch = batches.get(link) ?? []
      let fresh = 0
      if (link.primary && !stalled) {
        // The seed is idle and a chunk has waited at a relay for a while: ask the seed for it
        // (whichever copy arrives second is dropped unused).
        while (link.exhausted && this.stallBudget > 0 && link.inflight.length + batch.length < this.seedInflight) {
          const oldest = this.oldestWaitingAtRelay(now)
          if (oldest === undefined) break
          if (now - oldest.at < config.relayWaitMs) { this.wakeAt(oldest.at + config.relayWaitMs, now); break }
          const past = oldest.index
          this.askedPastStall.add(past)
          batch.push(past)
          this.stallBudget--
          this.stats.pastStall++
          this.ctx.counters.inc('swarm.past_stalled_relay')
          total++
        }
        // The seed chooses: a chunk no target holds yet (we will relay it), or in the end game
        // one we lack. Asking while anything is missing keeps the seed's upload busy.
        while (now >= link.freshAfter && link.inflight.length + batch.length + fresh < this.seedInflight && total < config.maxInflight && unrequested > 0) {
          // With other seeds around, ask the primary only for what no other link can give.
          if (this.extraSeeds && !this.todo.some((i) => !this.have.has(i) && !this.requested.has(i) && !open.some((l) => l !== link && l.have.has(i)))) break
          fresh++
          total++
          unrequested--
        }
      }
      if (batch.length === 0 && fresh === 0) continue
      if (link.inflight.length === 0) link.lastReplyAt = now
      if (!link.peer.seed) for (const i of batch) this.askedAt.set(i, now)
      link.inflight.push(...batch, ...Array<number>(fresh).fill(FRESH))
      const bulk = link.bulk as BulkChannel
      bulk.write(encodeRequest(batch, fresh)).catch((err: Error) => { if (link.bulk === bulk) this.linkDown(link, err) })
      if (stalled && link.peer.seed && batch.length > 0) {
        this.lastProgressAt = Date.now()
        this.ctx.counters.inc('swarm.stall_fallback')
        this.stats.stalls++
      }
    }
  }

  /**
   * The request that has waited longest at an open relay without its reply beginning (not held,
   * not asked of the seed already), and since when.
   */
  private oldestWaitingAtRelay (now: number): { index: number, at: number } | undefined {
    let oldest: { index: number, at: number } | undefined
    for (const l of this.links) {
      if (l.peer.seed || l.state !== 'open') continue
      for (const k of l.inflight) {
        if (k === FRESH || this.have.has(k) || this.receiving.has(k) || this.askedPastStall.has(k)) continue
        const at = this.askedAt.get(k) ?? now
        if (oldest === undefined || at <= oldest.at) oldest = { index: k, at }
      }
    }
    return oldest
  }

  /** Runs fill() again at `when` (the oldest waiting request then passes relayWaitMs), once. */
  private wakeAt (when: number, now: number): void {
    if (this.pastStallTimer !== undefined) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      this.pastStallTimer = undefined
      this.schedule()
    }, Math.max(1, when - now))
    this.pastStallTimer = t
    this.timers.add(t)
  }

  private pick (link: Link, open: Link[]): number | undefined {
    for (const i of this.todo) {
      if (this.have.has(i) || this.requested.has(i) || !link.have.has(i)) continue
      // From a seed only as the stall fallback, and not what a target could relay.
      if (link.peer.seed && open.some((l) => !l.peer.seed && l.have.has(i))) continue
      return i
    }
    return undefined
  }
}

function ipOf (addr: Multiaddr): string | undefined {
  for (const c of addr.getComponents()) {
    if ((c.name === 'ip4' || c.name === 'ip6') && c.value !== undefined) return c.value
  }
  return undefined
}
