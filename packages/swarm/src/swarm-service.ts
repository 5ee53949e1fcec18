// The swarm service of one agent: serves chunks to any participant (chunk links), takes part in
// transfers as a target (session protocol), and coordinates pushes (push()). See transfer-plan.ts
// for why the seeds upload each chunk about once, chunk-puller.ts for how targets relay.
import { randomBytes } from 'node:crypto'
import type { Libp2p, PeerId, Stream, Connection } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { streamChannel, type MessageChannel } from '@vmesh/wire'
import { peerIdFromBytes, peerIdToBytes } from '@vmesh/mesh'
import { decodeManifest, isComplete, missingBytes, sha256, type ChunkStore, type Manifest, type ManifestStore } from '@vmesh/store'
import { Bitfield } from './bitfield.js'
import { BulkListener } from './bulk-listener.js'
import { ChunkPull, type PullPeer } from './chunk-puller.js'
import { serveChunkLink } from './chunk-server.js'
import { etaMs, initialRate, updateRate, type HostProgress, type RateState } from './progress.js'
import { RateLimiter } from './rate-limiter.js'
import { DEFAULT_SWARM_CONFIG, type RateLimits, type SwarmConfig } from './swarm-config.js'
import { announceChunks, checkSeal, liveInfo, manifestInfo, markSealed, SwarmContext, type CounterSink, type ManifestInfo, type SwarmLog } from './swarm-context.js'
import {
  CHUNK_PROTOCOL, SESSION_PROTOCOL, SWARM_VERSION, SwarmProtocolError, swarmLimits, errorReason,
  checkAnnounce, checkProgress, checkStart, checkChunkCount, decodeHave, decodeSessionFrame, encodeSession, openTimeout
} from './swarm-protocol.js'
import { planTransfer } from './transfer-plan.js'
import { VerifiedChunkCache } from './verified-cache.js'

export interface SwarmServiceOptions {
  node: Libp2p
  store: ChunkStore
  manifests: ManifestStore
  log: SwarmLog
  counters: CounterSink
  /** Address the bulk listener binds: the host's address that peers reach (default 127.0.0.1). */
  bulkHost?: string
  rateLimits?: RateLimits
  config?: Partial<SwarmConfig>
  /** Called when this host, as a target, came to hold a manifest completely. */
  onComplete?: (manifestId: string) => void
  /**
   * Called when this host becomes a target of a push, before it fetches anything (the manifest
   * is saved by then), and awaited: the agent prepares to assemble a snapshot's files.
   */
  onTargetStart?: (manifestId: string) => Promise<void>
  /** Every chunk this host receives, verified, as it arrives (before it is durable). */
  onChunk?: (manifestId: string, hash: string, data: Uint8Array) => void
  /** This host's pull of a manifest stopped without completing. */
  onTargetFailed?: (manifestId: string) => void
}

export interface PushTarget {
  peerId: PeerId
  /** For progress and messages. */
  name?: string
}

export interface PushOptions {
  signal?: AbortSignal
  onProgress?: (p: HostProgress) => void
  /** Other hosts that hold the whole manifest and may serve it too. */
  seeds?: PushTarget[]
}

export interface PushResult {
  id: string
  hosts: HostProgress[]
  /** Chunk bytes this host uploaded for the manifest while the push ran. */
  sourceEgressBytes: number
  /** What the plan asked of all seeds together: each missing chunk once. */
  plannedSeedBytes: number
  storedBytes: number
  elapsedMs: number
}

/** A target's pull in progress, by session id (SwarmService.pulls). */
interface PullEntry {
  pull: ChunkPull
  info: ManifestInfo
  /** The session stream reporting it; undefined while it waits for a re-attach. */
  attached: MessageChannel | undefined
  orphanTimer?: NodeJS.Timeout
  startedAt: number
  /** What this host had served of the manifest before, to report this session's share. */
  servedBefore: number
}

/** A push of a snapshot still being taken: see SwarmService.pushLive. */
export interface LivePush {
  sessionId: string
  /**
   * Chunks stored here, in order; repeats (of these or earlier ones) are dropped. `first`: hand
   * them out before the others named so far (a clone's disks and kernel, to start its QEMU).
   * Past the capacity, the push is aborted (its result says so).
   */
  announce: (chunks: Array<{ hash: string, size: number, data?: Uint8Array }>, opts?: { first?: boolean }) => void
  /** The manifest the announced chunks make up (exactly those); the targets finish with it. */
  seal: (manifestId: string, encoded: Uint8Array) => void
  /** The snapshot failed: every target is told and fails. */
  abort: (reason: string) => void
  readonly result: Promise<PushResult>
}

const START_TIMEOUT_MS = 10_000
/** How long a target keeps pulling after its session stream broke, waiting for the coordinator. */
const SESSION_REATTACH_MS = 30_000
/** How often, and how many times, the coordinator tries to re-attach a session that broke. */
const REATTACH_ATTEMPTS = 4

export class SwarmService {
  private ctx: SwarmContext | undefined
  private readonly config: SwarmConfig
  private listener: BulkListener | undefined
  private readonly sessions = new Set<MessageChannel>()
  /**
   * Pulls in progress by session id. A session stream that breaks (the connection dropped on a
   * loaded machine) does not stop the pull at once: the coordinator re-attaches with the same
   * session id within SESSION_REATTACH_MS, and the pull goes on where it was.
   */
  private readonly pulls = new Map<string, PullEntry>()
  /** Pushes this host coordinates, per manifest id. */
  private readonly pushing = new Map<string, number>()

  constructor (private readonly opts: SwarmServiceOptions) {
    this.config = { ...DEFAULT_SWARM_CONFIG, ...opts.config }
  }

  get context (): SwarmContext {
    if (this.ctx === undefined) throw new Error('swarm service not started')
    return this.ctx
  }

  /** Where the bulk listener accepts connections. */
  get bulkAddress (): { host: string, port: number } {
    if (this.listener === undefined) throw new Error('swarm service not started')
    return this.listener.address
  }

  /** Whether this host is pushing the manifest right now (it coordinates a push of it). */
  isPushing (manifestId: string): boolean {
    return (this.pushing.get(manifestId) ?? 0) > 0
  }

  /** Whether this host is receiving the manifest right now (a pull that has not ended). */
  isPulling (manifestId: string): boolean {
    for (const e of this.pulls.values()) if (e.info.manifestId === manifestId && !e.pull.settled) return true
    return false
  }

  /**
   * Whether a live push to this host may still bring `manifestId`: one whose manifest has not
   * come yet, or has come as `manifestId` and is being sealed (the agent prepares for it).
   */
  mayBringSoon (manifestId: string): boolean {
    for (const e of this.pulls.values()) {
      if (e.pull.settled || e.info.sealed) continue
      if (e.info.manifestId === '' || e.info.manifestId === manifestId) return true
    }
    return false
  }

  async start (): Promise<void> {
    const { node, store, manifests, log, counters } = this.opts
    this.listener = new BulkListener({ host: this.opts.bulkHost ?? '127.0.0.1' })
    await this.listener.listen()
    const limits = this.opts.rateLimits ?? {}
    this.ctx = new SwarmContext(node, store, manifests, this.listener, new VerifiedChunkCache(this.config.cacheBytes),
      new RateLimiter(limits.uploadBytesPerS ?? 0), new RateLimiter(limits.downloadBytesPerS ?? 0), counters, log, this.config)
    const ctx = this.ctx
    await node.handle(CHUNK_PROTOCOL, (stream, conn) => { void serveChunkLink(ctx, stream, conn) }, { maxInboundStreams: 256 })
    await node.handle(SESSION_PROTOCOL, (stream, conn) => { void this.serveSession(stream, conn) }, { maxInboundStreams: 16 })
  }

  async stop (): Promise<void> {
    for (const s of this.sessions) s.abort(new Error('agent stopping'))
    await this.opts.node.unhandle(CHUNK_PROTOCOL).catch(() => {})
    await this.opts.node.unhandle(SESSION_PROTOCOL).catch(() => {})
    await this.listener?.close()
  }

  // --- target side -----------------------------------------------------------------------------

  private async serveSession (stream: Stream, conn: Connection): Promise<void> {
    const ctx = this.context
    const ch = streamChannel(stream, swarmLimits.sessionFrameBytes)
    const coordinator = conn.remotePeer.toString()
    this.sessions.add(ch)
    let pull: ChunkPull | undefined
    try {
      const first = await ch.recv(START_TIMEOUT_MS)
      if (first === undefined) return
      const f = decodeSessionFrame(first)
      if (f.body !== 'start' || f.start == null) throw new SwarmProtocolError('session_first', `a session must begin with start, got ${f.body ?? 'nothing'}`)
      const start = checkStart(f.start)
      const peers = start.peers.map(toPullPeer)
      const sessionBytes = f.start.sessionId ?? new Uint8Array(0)
      const entry = start.liveCapacity > 0
        ? this.startLivePull(start.sessionId, sessionBytes, start.liveCapacity, peers, coordinator)
        : await this.startPull(start.sessionId, sessionBytes, start.manifest, peers, coordinator)
      pull = entry.pull
      const { info } = entry
      pull.openSeedLinks()
      await ch.send(encodeSession({ ready: { have: pull.have.encode(), chunkCount: info.capacity } }))
      const planFrame = await ch.recv(this.config.readyTimeoutMs)
      if (planFrame === undefined) return
      const pf = decodeSessionFrame(planFrame)
      if (pf.body !== 'plan' || pf.plan == null) throw new SwarmProtocolError('session_plan', `expected a plan, got ${pf.body ?? 'nothing'}`)
      // The plan is the go signal; its seed set is checked but the seeds choose what to send.
      decodeHave(pf.plan.seedChunks ?? new Uint8Array(0), info.capacity)
      await this.runPull(ch, entry, coordinator)
    } catch (err) {
      // A broken stream during the handshake of a re-attach leaves the pull to its orphan timer.
      if (err instanceof SwarmProtocolError) pull?.stop(err)
      const reason = errorReason(err)
      ctx.counters.inc(`swarm.rejected.session.${reason}`)
      ctx.log.debug(`swarm session from ${coordinator}: ${(err as Error).message}`)
      ch.abort(err as Error)
    } finally {
      this.sessions.delete(ch)
      // However the session ended, a pull that never got its plan lets its seed links go (a
      // re-attached pull was started before and pulls on).
      if (pull !== undefined && !pull.isStarted) pull.stop(new Error('the session ended before the plan'))
    }
  }

  /**
   * A target's pull of a manifest: a new one, or the one a re-attaching coordinator left going
   * (same session id and manifest). Its seed links open while the manifest is written and the
   * agent prepares (the seeds hold the manifest already); the manifest is saved before any chunk
   * is asked for (start() comes after ready), so gc keeps what the transfer fetches.
   */
  private async startPull (sid: string, sessionBytes: Uint8Array, encoded: Uint8Array, peers: PullPeer[], coordinator: string): Promise<PullEntry> {
    const ctx = this.context
    const invalid = (err: unknown): SwarmProtocolError => new SwarmProtocolError('manifest', `start carries an invalid manifest: ${(err as Error).message}`)
    let info: ManifestInfo
    try {
      info = manifestInfo(sha256(encoded), encoded)
    } catch (err) {
      throw invalid(err)
    }
    const { id } = info
    const known = this.pulls.get(sid)
    if (known !== undefined && known.info.id === id && !known.pull.settled) {
      clearTimeout(known.orphanTimer)
      ctx.log.info(`swarm ${id.slice(0, 12)}: the coordinator re-attached to the session; ${formatMiB(known.pull.bytesTotal - known.pull.bytesDone)} left`)
      return known
    }
    const pull = new ChunkPull(ctx, info, peers, sessionBytes, this.opts.onChunk)
    pull.openSeedLinks()
    try {
      await ctx.manifests.saveEncoded(encoded, id)
    } catch (err) {
      pull.stop(err as Error)
      throw invalid(err)
    }
    ctx.remember(info)
    await this.opts.onTargetStart?.(id).catch((err: Error) => { ctx.log.warn(`swarm ${id.slice(0, 12)}: preparing for the transfer failed: ${err.message}`) })
    const entry = this.addPull(sid, pull, ctx.servedBytes.get(id) ?? 0)
    ctx.log.info(`swarm ${id.slice(0, 12)}: target of a push from ${coordinator.slice(-8)}: ${formatMiB(entry.pull.bytesTotal - entry.pull.bytesDone)} to fetch from ${peers.length - 1} peer(s)`)
    return entry
  }

  /** A target's pull of a live push: the chunks are named as the source stores them, the manifest comes last. */
  private startLivePull (sid: string, sessionBytes: Uint8Array, capacity: number, peers: PullPeer[], coordinator: string): PullEntry {
    const ctx = this.context
    if (this.pulls.has(sid)) throw new SwarmProtocolError('session_id', 'a live push cannot be re-attached')
    const info = liveInfo(sid, capacity)
    ctx.live.set(sid, info)
    const entry = this.addPull(sid, new ChunkPull(ctx, info, peers, sessionBytes, this.opts.onChunk), 0)
    void entry.pull.done.catch(() => {}).finally(() => { setTimeout(() => { if (ctx.live.get(sid) === info) ctx.live.delete(sid) }, SESSION_REATTACH_MS).unref() })
    ctx.log.info(`swarm ${info.id.slice(0, 13)}: target of a live push from ${coordinator.slice(-8)} (the snapshot is still being taken)`)
    return entry
  }

  /** Records a pull under its session id, forgotten a while after it ends (a re-attach may still ask). */
  private addPull (sid: string, pull: ChunkPull, servedBefore: number): PullEntry {
    const entry: PullEntry = { pull, info: pull.info, attached: undefined, startedAt: Date.now(), servedBefore }
    this.pulls.set(sid, entry)
    void pull.done.catch(() => {}).finally(() => { setTimeout(() => { if (this.pulls.get(sid)?.pull === pull) this.pulls.delete(sid) }, SESSION_REATTACH_MS).unref() })
    return entry
  }

  private async runPull (ch: MessageChannel, entry: PullEntry, coordinator: string): Promise<void> {
    const ctx = this.context
    const { pull, info, servedBefore, startedAt } = entry
    entry.attached = ch
    const progress = (state: string, error = ''): Uint8Array => encodeSession({
      progress: { state, bytesDone: pull.bytesDone, bytesTotal: pull.bytesTotal, bytesFetched: pull.bytesFetched, bytesServed: (ctx.servedBytes.get(info.id) ?? 0) - servedBefore, error: error.slice(0, swarmLimits.maxErrorChars) }
    })
    // The stream broke: keep pulling for a while, the coordinator may re-attach.
    const orphan = (why: string): void => {
      if (entry.attached !== ch || pull.settled) return
      // A live push cannot be re-attached: its chunks were named on this stream.
      if (info.liveSession !== undefined) { pull.stop(new Error(why)); return }
      entry.attached = undefined
      clearTimeout(entry.orphanTimer)
      ctx.log.info(`swarm ${info.id.slice(0, 12)}: ${why}; pulling on for ${SESSION_REATTACH_MS / 1000} s in case it re-attaches`)
      entry.orphanTimer = setTimeout(() => { if (entry.attached === undefined) pull.stop(new Error(why)) }, SESSION_REATTACH_MS)
      entry.orphanTimer.unref()
    }
    let ended = false
    // Frames from the coordinator: the end of the push.
    const reading = (async () => {
      try {
        for (;;) {
          const frame = await ch.recv()
          if (frame === undefined) break
          const f = decodeSessionFrame(frame)
          if (f.body === 'end') { ended = true; pull.stop(new Error(`the push was ended: ${(f.end?.reason ?? '').slice(0, 200)}`)); break }
          if (f.body === 'announce' && f.announce != null && info.liveSession !== undefined) {
            const a = checkAnnounce(f.announce)
            const from = info.chunks.length
            if (!announceChunks(info, a.firstIndex, a.chunks)) throw new SwarmProtocolError('announce', `announce of chunks ${a.firstIndex}.. does not follow the ${from} known, or exceeds the capacity ${info.capacity}`)
            pull.announced(from)
          } else if (f.body === 'seal' && f.seal != null && info.liveSession !== undefined && !info.sealed) {
            await this.sealLivePull(pull, info, f.seal.manifest ?? new Uint8Array(0))
          } else {
            throw new SwarmProtocolError('session_frame', `unexpected ${f.body ?? 'empty'} frame in a session`)
          }
        }
        if (!ended) orphan(`the coordinator ${coordinator.slice(-8)} went away`)
      } catch (err) {
        if (err instanceof SwarmProtocolError) {
          pull.stop(err)
          ctx.counters.inc(`swarm.rejected.session.${err.reason}`)
        } else {
          orphan(`lost the session with the coordinator ${coordinator.slice(-8)}: ${(err as Error).message}`)
        }
      }
    })()
    const timer = setInterval(() => { if (entry.attached === ch) ch.send(progress('transferring')).catch(() => {}) }, this.config.progressIntervalMs)
    pull.start()
    try {
      await pull.done
      clearInterval(timer)
      const s = pull.stats
      if (entry.attached !== ch) return
      ctx.log.info(`swarm ${info.manifestId.slice(0, 12)}: complete, ${formatMiB(pull.bytesFetched)} fetched in ${Date.now() - startedAt} ms: ${s.fromSeeds} chunk(s) from seeds, ${s.fromRelays} from targets, ${s.none} "none", ${s.pastStall} past a stalled relay, ${s.stalls} stall fallback(s), ${s.linkFailures} link failure(s), ${s.corrupt} corrupt; ${pull.durable.flushMs} ms in durable flushes, ${s.writeWaitMs} ms waiting for the disk; started after ${s.startMs} ms, seed link open at ${s.seedLinkMs} ms, first chunk at ${s.firstChunkMs} ms`)
      this.opts.onComplete?.(info.manifestId)
      await ch.send(progress('done'))
    } catch (err) {
      clearInterval(timer)
      if (entry.attached !== ch) return
      if (pull.complete) {
        this.opts.onComplete?.(info.manifestId)
        await ch.send(progress('done')).catch(() => {})
      } else {
        ctx.log.warn(`swarm ${info.id.slice(0, 12)}: transfer stopped: ${(err as Error).message}`)
        // (A live push that failed before its manifest came has nothing the agent prepared.)
        if (info.manifestId !== '') this.opts.onTargetFailed?.(info.manifestId)
        await ch.send(progress('failed', (err as Error).message)).catch(() => {})
      }
    }
    // Stay in the session until the coordinator ends it (other targets may still fetch from us;
    // that goes over their own links, this only keeps the report channel orderly).
    await Promise.race([reading, new Promise((resolve) => setTimeout(resolve, 60_000).unref())])
    await ch.close().catch(() => {})
  }

  /**
   * A live push's manifest came: check it names exactly the chunks announced, save it, let the
   * agent prepare (onTargetStart), hand over the chunks that came before it, then end the table
   * so the pull finishes once it holds them all.
   */
  private async sealLivePull (pull: ChunkPull, info: ManifestInfo, encoded: Uint8Array): Promise<void> {
    const ctx = this.context
    let manifest
    try {
      manifest = decodeManifest(encoded)
      checkSeal(info, manifest)
    } catch (err) {
      throw new SwarmProtocolError('seal', `the live push's manifest does not fit it: ${(err as Error).message}`)
    }
    const id = await ctx.manifests.saveEncoded(encoded)
    ctx.remember(manifestInfo(id, encoded, manifest))
    info.manifestId = id
    await this.opts.onTargetStart?.(id).catch((err: Error) => { ctx.log.warn(`swarm ${id.slice(0, 12)}: preparing for the transfer failed: ${err.message}`) })
    markSealed(info, id, encoded, manifest)
    // Until now onChunk had no manifest to name: what is still in memory goes over again (what
    // is already durable, the agent's assembly copies from the store).
    for (const c of info.chunks) {
      const bytes = ctx.pending.get(c.hash) ?? ctx.cache.get(c.hash)
      if (bytes !== undefined) this.opts.onChunk?.(id, c.hash, bytes)
    }
    ctx.log.info(`swarm ${info.id.slice(0, 13)}: sealed as manifest ${id.slice(0, 12)} (${info.chunks.length} chunks, ${formatMiB(pull.bytesTotal - pull.bytesDone)} still to fetch)`)
    pull.announced(info.chunks.length)
  }

  // --- coordinator side -----------------------------------------------------------------------

  /**
   * Sends a manifest this host holds (or that `seeds` hold) to `targets`. Resolves when every
   * target is done or failed; a failed target never fails the others.
   */
  async push (manifestId: string, targets: PushTarget[], opts: PushOptions = {}): Promise<PushResult> {
    const ctx = this.context
    const info = await ctx.info(manifestId)
    const self = this.opts.node.peerId
    const seeds: PushTarget[] = []
    const manifest = info.manifest as Manifest
    if (isComplete(ctx.store, manifest)) seeds.push({ peerId: self, name: 'self' })
    const unique = uniqueTargets(targets, self)
    for (const s of opts.seeds ?? []) {
      const id = s.peerId.toString()
      if (!unique.some((t) => t.peerId.toString() === id) && id !== self.toString() && !seeds.some((x) => x.peerId.toString() === id)) seeds.push(s)
    }
    if (seeds.length === 0) {
      throw new Error(`no host holds all of manifest ${manifestId.slice(0, 16)}…: this host lacks ${formatMiB(missingBytes(ctx.store, manifest))} of it; push from a host that holds it (vmesh image ls shows which)`)
    }
    const sessionId = randomBytes(swarmLimits.sessionIdBytes)
    ctx.log.info(`swarm ${manifestId.slice(0, 12)}: pushing ${formatMiB(info.storedBytes)} to ${unique.length} host(s) from ${seeds.length} seed(s)`)
    this.pushing.set(manifestId, (this.pushing.get(manifestId) ?? 0) + 1)
    try {
      return await this.runPush(info, sessionId, seeds, unique, opts)
    } finally {
      const left = (this.pushing.get(manifestId) ?? 1) - 1
      if (left > 0) this.pushing.set(manifestId, left)
      else this.pushing.delete(manifestId)
    }
  }

  /**
   * Starts sending a snapshot that is still being taken (a live push: see proto/swarm.proto) to
   * `targets`, this host the only seed. Name each chunk with announce() once it is stored here
   * (with its bytes, served from memory until the store has them), then seal() with the
   * manifest they make up; `result` settles like push()'s. At most `capacity` distinct chunks.
   */
  pushLive (targets: PushTarget[], capacity: number, opts: PushOptions = {}): LivePush {
    const ctx = this.context
    const self = this.opts.node.peerId
    const sessionId = randomBytes(swarmLimits.sessionIdBytes)
    const sid = Buffer.from(sessionId).toString('hex')
    const info = liveInfo(sid, Math.min(capacity, swarmLimits.maxChunks))
    ctx.live.set(sid, info)
    const inMemory: string[] = []
    const named = new Set<string>()
    const feed = new LiveFeed(info)
    ctx.log.info(`swarm ${info.id.slice(0, 13)}: live push to ${targets.length} host(s) while the snapshot is taken`)
    const result = this.runPush(info, sessionId, [{ peerId: self, name: 'self' }], uniqueTargets(targets, self), { ...opts, feed })
      .finally(() => {
        // Served from memory only while the push ran (and, stored or not, no longer needed).
        for (const h of inMemory) ctx.pending.delete(h)
        setTimeout(() => { if (ctx.live.get(sid) === info) ctx.live.delete(sid) }, SESSION_REATTACH_MS).unref()
      })
    result.catch(() => {})
    return {
      sessionId: sid,
      announce: (chunks, announceOpts = {}) => {
        if (feed.aborted !== undefined) return
        const from = info.chunks.length
        const fresh: typeof chunks = []
        for (const c of chunks) {
          if (named.has(c.hash)) continue
          named.add(c.hash)
          fresh.push(c)
          if (c.data !== undefined && !ctx.store.has(c.hash) && !ctx.pending.has(c.hash)) { ctx.pending.set(c.hash, c.data); inMemory.push(c.hash) }
        }
        if (!announceChunks(info, from, fresh.map((c) => ({ hash: c.hash, size: c.size })))) {
          feed.abort(`the snapshot has more than the ${info.capacity} chunks the live push was opened for`)
          return
        }
        for (let i = from; i < info.chunks.length; i++) {
          if (announceOpts.first === true) info.first.push(i)
          ctx.hub.emit('gained', info.id, i, true)
        }
        feed.wake()
      },
      seal: (manifestId, encoded) => {
        const manifest = decodeManifest(encoded)
        checkSeal(info, manifest)
        markSealed(info, manifestId, encoded, manifest)
        for (const h of inMemory) if (ctx.store.has(h)) ctx.pending.delete(h)
        feed.wake()
      },
      abort: (reason) => { feed.abort(reason) },
      result
    }
  }

  /** The coordinator's part of a push: start every target, say go, follow them to the end. */
  private async runPush (info: ManifestInfo, sessionId: Uint8Array, seeds: PushTarget[], targets: PushTarget[], opts: PushOptions & { feed?: LiveFeed }): Promise<PushResult> {
    const ctx = this.context
    const started = Date.now()
    const feed = opts.feed
    const peers = [
      ...await Promise.all(seeds.map(async (s) => await this.swarmPeer(s, true))),
      ...await Promise.all(targets.map(async (t) => await this.swarmPeer(t, false)))
    ]
    const startFrame = encodeSession({ start: feed !== undefined ? { version: SWARM_VERSION, sessionId, peers, liveCapacity: info.capacity } : { version: SWARM_VERSION, sessionId, manifest: info.encoded, peers } })
    const egressBefore = ctx.servedBytes.get(info.id) ?? 0
    const runs = targets.map((t) => new TargetRun(t, info.storedBytes))
    const emit = (r: TargetRun): void => { opts.onProgress?.(r.snapshot()) }

    // 1. Start every target; each answers with what it already holds.
    await Promise.all(runs.map(async (r) => {
      try {
        const opening = openTimeout(START_TIMEOUT_MS + this.config.readyTimeoutMs)
        const stream = await this.opts.node.dialProtocol(r.target.peerId, SESSION_PROTOCOL, { signal: opening.signal }).catch((err: Error) => { opening.clear(); throw err })
        r.ch = streamChannel(stream, swarmLimits.sessionFrameBytes)
        await r.ch.send(startFrame)
        const frame = await r.ch.recv(this.config.readyTimeoutMs).finally(() => opening.clear())
        if (frame === undefined) throw new Error('the host closed the session before answering')
        const f = decodeSessionFrame(frame)
        if (f.body === 'progress' && f.progress != null && f.progress.state === 'failed') throw new Error((f.progress.error ?? 'failed').slice(0, swarmLimits.maxErrorChars))
        if (f.body !== 'ready' || f.ready == null) throw new SwarmProtocolError('session_ready', `expected ready, got ${f.body ?? 'nothing'}`)
        if (checkChunkCount(f.ready.chunkCount ?? 0) !== info.capacity) throw new SwarmProtocolError('chunk_count', 'the host counts a different number of chunks')
        r.have = decodeHave(f.ready.have ?? new Uint8Array(0), info.capacity)
        r.bytesDone = [...r.have.indices()].reduce((n, i) => n + (info.chunks[i]?.size ?? 0), 0)
        r.state = 'transferring'
        r.heard()
      } catch (err) {
        r.fail(`cannot start the transfer on ${r.name}: ${(err as Error).message}`)
      }
      emit(r)
    }))

    // 2. Go. The plan says what the seeds must send (each chunk no target holds, once); which
    // target gets which chunk first is decided as it goes, by the seeds' hand-out.
    const live = runs.filter((r) => r.state === 'transferring' && r.have !== undefined)
    // (A live push has no chunks yet: nothing to plan, the seed hands them out as they come.)
    const plan = feed !== undefined
      ? { stripes: new Map<string, number[]>(), seedBytes: 0 }
      : planTransfer(info.chunks.map((c) => c.size), live.map((r) => ({ id: r.id, have: r.have as Bitfield })))
    const seedChunks = Bitfield.from(info.capacity, [...plan.stripes.values()].flat()).encode()
    await Promise.all(live.map(async (r) => {
      await r.ch?.send(encodeSession({ plan: { seedChunks } })).catch((err: Error) => r.fail(`lost the session with ${r.name}: ${err.message}`))
    }))
    // A live push: each target's session now carries the chunks as they are named, then the seal.
    if (feed !== undefined) for (const r of live) void feed.pump(r)

    // 3. Follow progress. A target that fails needs nothing from here: the seeds see its links
    // close and hand out again what it held and never passed on.
    const reassign = (dead: TargetRun): void => {
      ctx.log.info(`swarm ${info.id.slice(0, 12)}: ${dead.name} failed: ${dead.error ?? ''}`)
    }
    await new Promise<void>((resolve) => {
      const settleCheck = (): void => { if (runs.every((r) => r.state === 'done' || r.state === 'failed')) resolve() }
      const onAbort = (): void => {
        for (const r of runs) if (r.state !== 'done' && r.state !== 'failed') { r.fail('push cancelled'); emit(r) }
        resolve()
      }
      if (opts.signal?.aborted === true) { onAbort(); return }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      feed?.onAbort((reason) => { for (const r of runs) if (!r.settled) { r.fail(reason); emit(r) } resolve() })
      const watchdog = setInterval(() => {
        for (const r of runs) {
          if (r.state === 'transferring' && !r.reattaching && Date.now() - r.lastHeardAt > this.config.targetSilenceMs) {
            r.fail(`${r.name} sent no progress for ${Math.round(this.config.targetSilenceMs / 1000)} s`)
            r.ch?.abort(new Error('silent'))
            reassign(r)
            emit(r)
          }
        }
        settleCheck()
      }, 1000)
      for (const r of live) {
        void (async () => {
          // Follows the target's reports; if the session stream breaks while the target still
          // transfers, re-attaches (same session id: the target's pull goes on meanwhile). A
          // live push cannot: its chunks were named on the stream that broke.
          while (r.state === 'transferring') {
            const ch = r.ch as MessageChannel
            let lost: string | undefined
            try {
              for (;;) {
                const frame = await ch.recv()
                if (frame === undefined) { lost = `lost the session with ${r.name} (the agent stopped or the network failed)`; break }
                const f = decodeSessionFrame(frame)
                if (f.body !== 'progress' || f.progress == null) throw new SwarmProtocolError('session_frame', `unexpected ${f.body ?? 'empty'} frame from a target`)
                const p = checkProgress(f.progress)
                r.update(p.bytesDone, p.bytesFetched, feed !== undefined ? p.bytesTotal : undefined)
                if (p.state === 'done') r.state = 'done'
                else if (p.state === 'failed') { r.fail(p.error || 'failed'); reassign(r) }
                emit(r)
                if (r.settled) break
              }
            } catch (err) {
              if (err instanceof SwarmProtocolError) {
                ctx.counters.inc(`swarm.rejected.session.${err.reason}`)
                if (r.state === 'transferring') { r.fail(`${r.name} broke the session protocol: ${err.message}`); reassign(r); emit(r) }
                break
              }
              lost = `lost the session with ${r.name}: ${(err as Error).message}`
            }
            if (r.state !== 'transferring' || lost === undefined || opts.signal?.aborted === true) break
            r.reattaching = true
            const again = feed === undefined && await this.reattach(r, startFrame, seedChunks, info.capacity)
            r.reattaching = false
            if (!again) { r.fail(lost); reassign(r); emit(r) }
          }
          settleCheck()
        })()
      }
      settleCheck()
      const cleanup = (): void => { clearInterval(watchdog); opts.signal?.removeEventListener('abort', onAbort) }
      void this.whenAll(runs).then(cleanup)
      opts.signal?.addEventListener('abort', cleanup, { once: true })
    })

    // 4. End the sessions.
    const reason = opts.signal?.aborted === true || feed?.aborted !== undefined ? 'cancelled' : 'complete'
    await Promise.all(runs.map(async (r) => {
      if (r.ch === undefined) return
      await r.ch.send(encodeSession({ end: { reason } })).catch(() => {})
      await r.ch.close().catch(() => {})
    }))
    const result: PushResult = {
      id: info.manifestId,
      hosts: runs.map((r) => r.snapshot()),
      sourceEgressBytes: (ctx.servedBytes.get(info.id) ?? 0) - egressBefore,
      plannedSeedBytes: feed !== undefined ? info.storedBytes : plan.seedBytes,
      storedBytes: info.storedBytes,
      elapsedMs: Date.now() - started
    }
    ctx.log.info(`swarm ${info.id.slice(0, 12)}: push ${reason}: ${result.hosts.filter((h) => h.state === 'done').length}/${runs.length} host(s) done in ${result.elapsedMs} ms, this host uploaded ${formatMiB(result.sourceEgressBytes)}`)
    return result
  }

  /** Re-opens a broken session with a target that may still be pulling; false if it cannot. */
  private async reattach (r: TargetRun, startFrame: Uint8Array, seedChunks: Uint8Array, count: number): Promise<boolean> {
    const ctx = this.context
    for (let attempt = 0; attempt < REATTACH_ATTEMPTS; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt))
      if (r.state !== 'transferring') return false
      const opening = openTimeout(START_TIMEOUT_MS)
      let ch: MessageChannel | undefined
      try {
        const stream = await this.opts.node.dialProtocol(r.target.peerId, SESSION_PROTOCOL, { signal: opening.signal })
        ch = streamChannel(stream, swarmLimits.sessionFrameBytes)
        await ch.send(startFrame)
        const frame = await ch.recv(START_TIMEOUT_MS)
        if (frame === undefined) throw new Error('closed before answering')
        const f = decodeSessionFrame(frame)
        if (f.body !== 'ready' || f.ready == null || checkChunkCount(f.ready.chunkCount ?? 0) !== count) throw new Error(`expected ready, got ${f.body ?? 'nothing'}`)
        await ch.send(encodeSession({ plan: { seedChunks } }))
        if (r.state !== 'transferring') { ch.abort(new Error('no longer needed')); return false }
        r.ch = ch
        r.heard()
        ctx.counters.inc('swarm.session_reattached')
        ctx.log.info(`swarm: re-attached the session with ${r.name}`)
        return true
      } catch (err) {
        ch?.abort(err as Error)
        ctx.log.debug(`swarm: re-attaching the session with ${r.name} failed: ${(err as Error).message}`)
      } finally {
        opening.clear()
      }
    }
    return false
  }

  private async whenAll (runs: TargetRun[]): Promise<void> {
    while (!runs.every((r) => r.state === 'done' || r.state === 'failed')) await new Promise((resolve) => setTimeout(resolve, 200))
  }

  private async swarmPeer (t: PushTarget, seed: boolean): Promise<{ peerId: Uint8Array, addrs: Uint8Array[], seed: boolean, name: string }> {
    const node = this.opts.node
    let addrs: Multiaddr[]
    if (t.peerId.equals(node.peerId)) {
      addrs = node.getMultiaddrs().map((a) => a.decapsulateCode(0x01a5 /* p2p */))
    } else {
      addrs = await node.peerStore.get(t.peerId).then((p) => p.addresses.map((a) => a.multiaddr), () => [])
    }
    return {
      peerId: peerIdToBytes(t.peerId),
      addrs: addrs.slice(0, swarmLimits.maxAddrs).map((a) => a.bytes).filter((b) => b.length <= swarmLimits.maxAddrBytes),
      seed,
      name: (t.name ?? '').slice(0, swarmLimits.maxNameChars)
    }
  }
}

/** The coordinator's record of one target. */
class TargetRun {
  readonly id: string
  readonly name: string
  state: HostProgress['state'] = 'waiting'
  ch: MessageChannel | undefined
  have: Bitfield | undefined
  bytesDone = 0
  bytesFetched = 0
  error: string | undefined
  lastHeardAt = Date.now()
  /** A broken session is being re-opened: the silence watchdog waits for that to end. */
  reattaching = false
  private rate: RateState

  constructor (readonly target: PushTarget, public bytesTotal: number) {
    this.id = target.peerId.toString()
    this.name = target.name !== undefined && target.name !== '' ? target.name : this.id.slice(-8)
    this.rate = initialRate(0, Date.now())
  }

  heard (): void {
    this.lastHeardAt = Date.now()
  }

  get settled (): boolean {
    return this.state === 'done' || this.state === 'failed'
  }

  /** A live push's total grows as its chunks are named: the target reports it. */
  update (bytesDone: number, bytesFetched: number, bytesTotal?: number): void {
    this.heard()
    if (bytesTotal !== undefined) this.bytesTotal = bytesTotal
    this.bytesDone = Math.min(bytesDone, this.bytesTotal)
    this.bytesFetched = bytesFetched
    this.rate = updateRate(this.rate, bytesFetched, Date.now())
  }

  fail (error: string): void {
    if (this.state === 'done' || this.state === 'failed') return
    this.state = 'failed'
    this.error = error
    this.ch?.abort(new Error(error))
  }

  snapshot (): HostProgress {
    const left = this.bytesTotal - this.bytesDone
    return {
      host: this.id,
      hostBytes: peerIdToBytes(this.target.peerId),
      name: this.name,
      state: this.state,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      bytesFetched: this.bytesFetched,
      rateBytesPerS: this.state === 'transferring' ? this.rate.rate : 0,
      etaMs: this.state === 'done' ? 0 : this.state === 'transferring' ? etaMs(left, this.rate.rate) : undefined,
      ...(this.error !== undefined ? { error: this.error } : {})
    }
  }
}

function toPullPeer (p: { peerId: Uint8Array, addrs: Uint8Array[], seed: boolean, name: string }): PullPeer {
  let peerId: PeerId
  try {
    peerId = peerIdFromBytes(p.peerId)
  } catch (err) {
    throw new SwarmProtocolError('peer_id', `malformed peer id in start: ${(err as Error).message}`)
  }
  const addrs: Multiaddr[] = []
  for (const a of p.addrs) {
    try { addrs.push(multiaddr(a)) } catch { /* unusable address: the peer store may know others */ }
  }
  return { id: peerId.toString(), peerId, name: p.name, seed: p.seed, addrs }
}

function formatMiB (bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`
}

/** Each target once, never this host. */
function uniqueTargets (targets: PushTarget[], self: PeerId): PushTarget[] {
  const seen = new Set<string>([self.toString()])
  return targets.filter((t) => {
    const id = t.peerId.toString()
    if (seen.has(id)) return false
    seen.add(id)
    return true
  })
}

/**
 * Carries a live push's table to each target's session as it grows: announce frames in order
 * (at most maxHaveUpdate chunks each), then the seal.
 */
class LiveFeed {
  private waiters: Array<() => void> = []
  private abortReason: string | undefined
  private readonly abortListeners: Array<(reason: string) => void> = []

  constructor (private readonly info: ManifestInfo) {}

  get aborted (): string | undefined {
    return this.abortReason
  }

  wake (): void {
    for (const w of this.waiters.splice(0)) w()
  }

  abort (reason: string): void {
    if (this.abortReason !== undefined) return
    this.abortReason = reason
    for (const l of this.abortListeners) l(reason)
    this.wake()
  }

  onAbort (listener: (reason: string) => void): void {
    if (this.abortReason !== undefined) listener(this.abortReason)
    else this.abortListeners.push(listener)
  }

  async pump (r: TargetRun): Promise<void> {
    const { info } = this
    let sent = 0
    try {
      for (;;) {
        if (r.settled || this.abortReason !== undefined) return
        const ch = r.ch
        if (ch === undefined) return
        if (sent < info.chunks.length) {
          const batch = info.chunks.slice(sent, sent + swarmLimits.maxHaveUpdate)
          await ch.send(encodeSession({ announce: { firstIndex: sent, hashes: batch.map((c) => Buffer.from(c.hash, 'hex')), sizes: batch.map((c) => c.size) } }))
          sent += batch.length
          continue
        }
        if (info.sealed) {
          await ch.send(encodeSession({ seal: { manifest: info.encoded } }))
          return
        }
        await new Promise<void>((resolve) => { this.waiters.push(resolve) })
      }
    } catch (err) {
      r.fail(`lost the session with ${r.name}: ${(err as Error).message}`)
    }
  }
}
