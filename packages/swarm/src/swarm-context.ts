// What the swarm's parts share inside one agent: the node, the store, the bulk listener, the rate
// limiters, counters, and a hub that says when a chunk of a manifest arrived (so servers can tell
// their pullers at once).
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Libp2p } from '@libp2p/interface'
import { decodeManifest, manifestChunks, storeConfig, type ChunkInfo, type ChunkStore, type Manifest, type ManifestStore } from '@vmesh/store'
import type { BulkListener } from './bulk-listener.js'
import type { RateLimiter } from './rate-limiter.js'
import type { SwarmConfig } from './swarm-config.js'
import type { VerifiedChunkCache } from './verified-cache.js'
import { SeedHandout } from './seed-handout.js'
import { PartialChunks, PieceHashCache } from './partial-chunks.js'

/** Where the swarm counts what it rejected and moved (the agent's Counters fit). */
export interface CounterSink {
  inc: (name: string, by?: number) => void
}

export interface SwarmLog {
  debug: (msg: string) => void
  info: (msg: string) => void
  warn: (msg: string) => void
}

export interface ManifestInfo {
  /** The manifest's id; for a live push, `live-<session id>` until and after it is sealed. */
  id: string
  encoded: Uint8Array
  /** Undefined while a live push is not sealed. */
  manifest: Manifest | undefined
  /** Distinct stored chunks in first-use order: index i of every have-map and request. A live
   * push's grow as they are announced (in announce order), up to `capacity`. */
  chunks: ChunkInfo[]
  /** Bits of every have-map: the chunk count, or a live push's bound on it. */
  capacity: number
  /** Every chunk is known: always, but for a live push before its manifest came (SwarmSeal). */
  sealed: boolean
  /** A live push's session id (hex); its sealed manifest's id is then in `manifestId`. */
  liveSession?: string
  manifestId: string
  /** Largest chunk, to bound replies. */
  maxChunkBytes: number
  storedBytes: number
  /**
   * Indices to send before the others: the chunks of every layer but memory. They are a few MiB
   * of a VM snapshot (disks, kernel, device state, spec) and all a winner needs to start its
   * clones' QEMUs, which it then does while the memory, most of the bytes, still streams in.
   */
  first: number[]
}

export function manifestInfo (id: string, encoded: Uint8Array, manifest = decodeManifest(encoded)): ManifestInfo {
  const chunks = manifestChunks(manifest)
  const index = new Map(chunks.map((c, i) => [c.hash, i]))
  const first = new Set<number>()
  for (const layer of manifest.layers) {
    if (layer.kind === 'memory') continue
    for (const h of layer.chunks) if (h !== null) first.add(index.get(h) as number)
  }
  return {
    id,
    encoded,
    manifest,
    chunks,
    capacity: chunks.length,
    sealed: true,
    manifestId: id,
    maxChunkBytes: chunks.reduce((m, c) => Math.max(m, c.size), 0),
    storedBytes: chunks.reduce((n, c) => n + c.size, 0),
    // All of them (an image has no memory) is none: each seed then starts at its own offset.
    first: first.size < chunks.length ? [...first].sort((a, b) => a - b) : []
  }
}

/** A live push's chunk table before any chunk is announced (see proto/swarm.proto). */
export function liveInfo (sessionId: string, capacity: number): ManifestInfo {
  return { id: `live-${sessionId}`, encoded: new Uint8Array(0), manifest: undefined, chunks: [], capacity, sealed: false, liveSession: sessionId, manifestId: '', maxChunkBytes: storeConfig.MAX_CHUNK_SIZE, storedBytes: 0, first: [] }
}

/** Appends announced chunks to a live push's table; false if they do not fit or break its order. */
export function announceChunks (info: ManifestInfo, firstIndex: number, chunks: ChunkInfo[]): boolean {
  if (info.sealed || firstIndex !== info.chunks.length || info.chunks.length + chunks.length > info.capacity) return false
  for (const c of chunks) {
    if (!(c.size > 0 && c.size <= storeConfig.MAX_CHUNK_SIZE)) return false
    info.chunks.push(c)
    info.storedBytes += c.size
  }
  return true
}

/**
 * Checks that a live push's manifest is made of exactly the chunks announced (in any order);
 * throws otherwise. markSealed() then ends the table, which keeps its announce order.
 */
export function checkSeal (info: ManifestInfo, manifest: Manifest): void {
  const announced = new Set(info.chunks.map((c) => c.hash))
  const final = manifestChunks(manifest)
  if (final.length !== announced.size || announced.size !== info.chunks.length || !final.every((c) => announced.has(c.hash))) {
    throw new Error(`the manifest has ${final.length} distinct chunks and ${info.chunks.length} were announced; they must be the same`)
  }
}

export function markSealed (info: ManifestInfo, manifestId: string, encoded: Uint8Array, manifest: Manifest): void {
  info.manifest = manifest
  info.encoded = encoded
  info.manifestId = manifestId
  info.sealed = true
}

export class SwarmContext {
  /** A chunk of a manifest arrived verified (gained), or began arriving to be passed on while it does (receiving). */
  /** (manifest id, chunk index, first: this host got the chunk from a seed, or is one) */
  readonly hub = new EventEmitter<{ gained: [string, number, boolean], receiving: [string, number, boolean] }>()
  /** Chunks arriving now that servers may pass on as their pieces verify (cut-through). */
  readonly partials = new PartialChunks()
  /** Piece hashes of chunks received with them: given in replies, so pullers may cut through too. */
  readonly pieceHashes = new PieceHashCache(8192)
  /** Live pushes this host takes part in, by session id (hex). */
  readonly live = new Map<string, ManifestInfo>()
  /** Verified chunks received and not yet durable in the store (DurableQueue): served from here. */
  readonly pending = new Map<string, Uint8Array>()
  /** Chunk bytes this agent uploaded, per manifest id. */
  readonly servedBytes = new Map<string, number>()
  private readonly infos = new Map<string, ManifestInfo>()
  /** Hand-out state per push (manifest id + session id), while links of that push are open. */
  private readonly handouts = new Map<string, { handout: SeedHandout, links: number }>()

  constructor (
    readonly node: Libp2p,
    readonly store: ChunkStore,
    readonly manifests: ManifestStore,
    readonly listener: BulkListener,
    readonly cache: VerifiedChunkCache,
    readonly upload: RateLimiter,
    readonly download: RateLimiter,
    readonly counters: CounterSink,
    readonly log: SwarmLog,
    readonly config: SwarmConfig
  ) {
    // Every server of a manifest listens for its chunks; many links are normal.
    this.hub.setMaxListeners(0)
  }

  get selfId (): string {
    return this.node.peerId.toString()
  }

  /** The manifest's decoded form and chunk index, loaded once from the manifest store. */
  async info (id: string): Promise<ManifestInfo> {
    const known = this.infos.get(id)
    if (known !== undefined) return known
    const encoded = await this.manifests.loadEncoded(id)
    const info = manifestInfo(id, encoded)
    this.remember(info)
    return info
  }

  remember (info: ManifestInfo): void {
    // A handful of manifests are in use at once; forget the oldest beyond that.
    this.infos.set(info.id, info)
    if (this.infos.size > 32) {
      const oldest = this.infos.keys().next().value
      if (oldest !== undefined) this.infos.delete(oldest)
    }
  }

  /** The hand-out state of a push, shared by the links of its pullers; release() when a link ends. */
  handout (info: ManifestInfo, sessionId: string): { handout: SeedHandout, release: () => void } {
    const key = `${info.id}/${sessionId}`
    const count = info.capacity
    let entry = this.handouts.get(key)
    if (entry === undefined) {
      // A live push's chunks go out in the order they were stored (the table grows at its end),
      // and it has no end-game budget: its count is only a bound.
      const live = info.liveSession !== undefined
      const endgame = live ? 0 : Math.floor(count * this.config.endgameFraction)
      entry = { handout: new SeedHandout(count, Date.now, endgame, live ? 0 : startFractionOf(this.selfId), info.first, () => info.chunks.length), links: 0 }
      this.handouts.set(key, entry)
    }
    entry.links++
    const e = entry
    let released = false
    return {
      handout: e.handout,
      release: () => {
        if (released) return
        released = true
        if (--e.links === 0) this.handouts.delete(key)
      }
    }
  }

  served (id: string, bytes: number): void {
    this.servedBytes.set(id, (this.servedBytes.get(id) ?? 0) + bytes)
    this.counters.inc('swarm.served_bytes', bytes)
  }

  /** Verified bytes of a chunk held in memory (on their way to disk, or cached), if any. */
  inMemory (hash: string): Uint8Array | undefined {
    return this.pending.get(hash) ?? this.cache.get(hash)
  }

  /** Verified bytes of a chunk: from the cache, else read and re-hashed from the store. */
  async readChunk (hash: string): Promise<Uint8Array | undefined> {
    const cached = this.inMemory(hash)
    if (cached !== undefined) return cached
    if (!this.store.has(hash)) return undefined
    try {
      const bytes = await this.store.readVerified(hash)
      this.cache.addVerified(hash, bytes)
      return bytes
    } catch {
      // Corrupt (deleted and counted by the store) or gone: tell the puller we lack it.
      return undefined
    }
  }
}

/** A stable place in [0, 1) for a peer id: where this seed starts handing out chunks. */
export function startFractionOf (peerId: string): number {
  return createHash('sha256').update(peerId).digest().readUInt32BE(0) / 2 ** 32
}
