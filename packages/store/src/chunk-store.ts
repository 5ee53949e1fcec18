// Content-addressed chunk files on disk: <dir>/chunks/ab/cdef… named by the SHA-256 of their bytes.
//
// A chunk becomes visible (at its final name, and to has()) only once its bytes are durable:
// it is written to <dir>/chunks/tmp/, fsynced, renamed into place, and the directory fsynced.
// Imports write in batches so fsyncs overlap instead of stalling once per chunk. Every read
// that hands bytes onward is verified against the name; a corrupt chunk is deleted and reported.
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { assertHash, sha256, type Hash } from './hash.js'
import { ChunkNotFoundError, CorruptChunkError } from './errors.js'
import { QuotaExceededError, quotaAllows, quotaFree } from './quota.js'
import { fsyncDir } from './durable-file.js'
import { DEFAULT_WRITE_BATCH, MAX_CHUNK_SIZE } from './config.js'

export interface ChunkStoreOptions {
  /** The data directory; chunks live under <dir>/chunks/. Created if missing. */
  dir: string
  /** Most bytes of chunk data the store may hold (default: unlimited). */
  quotaBytes?: number
  /** Chunks per durability batch for imports (default DEFAULT_WRITE_BATCH). */
  writeBatch?: number
  /** Told about every corrupt chunk found (already deleted), e.g. to log and count it. */
  onCorrupt?: (err: CorruptChunkError) => void
}

export interface ChunkStoreStats {
  chunks: number
  /** bytes of chunk data stored */
  bytes: number
  quotaBytes: number
  /** bytes still free under the quota, after writes in flight */
  freeBytes: number
  /** corrupt chunks found and deleted since open */
  corruptDiscarded: number
}

interface PendingChunk { hash: Hash, bytes: Uint8Array }
interface WrittenChunk { hash: Hash, size: number }

const CHUNK_FILE_RE = /^[0-9a-f]{62}$/
const PREFIX_RE = /^[0-9a-f]{2}$/

export class ChunkStore {
  /** <dir>/chunks */
  readonly chunksDir: string
  readonly quotaBytes: number
  readonly writeBatch: number
  private readonly tmpDir: string
  private readonly onCorrupt: ((err: CorruptChunkError) => void) | undefined
  /** hash -> size of every durable chunk: has() and stats() without touching the disk */
  private readonly index = new Map<Hash, number>()
  /** prefix directories known to exist (so a batch creates and fsyncs each at most once) */
  private readonly prefixDirs = new Set<string>()
  /** quota bytes promised to writes in flight */
  private reservedBytes = 0
  private storedBytes = 0
  private corruptDiscarded = 0
  /** hashes GC must not delete: chunks of imports and transfers whose manifest is not saved yet */
  private readonly holds = new Map<Hash, number>()
  /** number of GC passes running; while > 0, writes and releases are remembered for them */
  private gcActive = 0
  private readonly touchedDuringGc = new Set<Hash>()
  private deferredReleases: Hash[] = []

  private constructor (readonly dir: string, opts: ChunkStoreOptions) {
    this.chunksDir = join(dir, 'chunks')
    this.tmpDir = join(this.chunksDir, 'tmp')
    this.quotaBytes = opts.quotaBytes ?? Number.POSITIVE_INFINITY
    this.writeBatch = Math.max(1, opts.writeBatch ?? DEFAULT_WRITE_BATCH)
    this.onCorrupt = opts.onCorrupt
    if (!(this.quotaBytes >= 0)) throw new RangeError(`quotaBytes must be >= 0, got ${opts.quotaBytes}`)
  }

  /**
   * Open (or create) the store. Leftover temp files of an earlier crash are removed; they were
   * never visible. One process owns a data directory at a time.
   */
  static async open (opts: ChunkStoreOptions): Promise<ChunkStore> {
    const store = new ChunkStore(opts.dir, opts)
    await mkdir(store.chunksDir, { recursive: true })
    await rm(store.tmpDir, { recursive: true, force: true })
    await mkdir(store.tmpDir, { recursive: true })
    await store.scan()
    return store
  }

  private async scan (): Promise<void> {
    for (const prefix of await readdir(this.chunksDir)) {
      if (!PREFIX_RE.test(prefix)) continue
      this.prefixDirs.add(prefix)
      const names = (await readdir(join(this.chunksDir, prefix))).filter((n) => CHUNK_FILE_RE.test(n))
      const sizes = await Promise.all(names.map(async (n) => (await stat(join(this.chunksDir, prefix, n))).size))
      names.forEach((n, i) => {
        const size = sizes[i] ?? 0
        this.index.set(prefix + n, size)
        this.storedBytes += size
      })
    }
  }

  pathOf (hash: Hash): string {
    return join(this.chunksDir, hash.slice(0, 2), hash.slice(2))
  }

  /** Whether a complete, durable chunk with this hash is stored (from the in-memory index). */
  has (hash: Hash): boolean {
    return this.index.has(hash)
  }

  /** Size in bytes of a stored chunk, or undefined. */
  sizeOf (hash: Hash): number | undefined {
    return this.index.get(hash)
  }

  /** Every stored chunk's hash (a snapshot of the index). */
  hashes (): Hash[] {
    return [...this.index.keys()]
  }

  stats (): ChunkStoreStats {
    return {
      chunks: this.index.size,
      bytes: this.storedBytes,
      quotaBytes: this.quotaBytes,
      freeBytes: quotaFree(this.quotaBytes, this.storedBytes, this.reservedBytes),
      corruptDiscarded: this.corruptDiscarded
    }
  }

  /**
   * The chunk's bytes, checked against its hash. A chunk that fails the check is deleted, reported
   * to onCorrupt, and a CorruptChunkError thrown: corrupt bytes are never returned.
   */
  async readVerified (hash: Hash): Promise<Uint8Array> {
    assertHash(hash)
    let bytes: Buffer
    try {
      bytes = await readFile(this.pathOf(hash))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.forget(hash)
        throw new ChunkNotFoundError(hash, this.chunksDir)
      }
      throw err
    }
    const actual = sha256(bytes)
    if (actual !== hash) {
      await unlink(this.pathOf(hash)).catch(() => {})
      this.forget(hash)
      this.corruptDiscarded++
      const err = new CorruptChunkError(hash, actual, 'stored')
      this.onCorrupt?.(err)
      throw err
    }
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  /**
   * Store a chunk received from elsewhere: its bytes must hash to `hash` (else CorruptChunkError
   * and nothing is stored). Returns false when the chunk was already stored. Resolves once durable.
   */
  async put (hash: Hash, bytes: Uint8Array): Promise<boolean> {
    assertHash(hash)
    if (bytes.byteLength === 0 || bytes.byteLength > MAX_CHUNK_SIZE) {
      throw new RangeError(`chunk ${hash.slice(0, 16)}… has ${bytes.byteLength} bytes; chunks hold 1..${MAX_CHUNK_SIZE}`)
    }
    const actual = sha256(bytes)
    if (actual !== hash) {
      this.corruptDiscarded++
      const err = new CorruptChunkError(hash, actual, 'received')
      this.onCorrupt?.(err)
      throw err
    }
    if (this.has(hash)) {
      this.touch(hash)
      return false
    }
    this.reserve(bytes.byteLength)
    await this.writeBatchDurably([{ hash, bytes }])
    return true
  }

  /** Delete a chunk (used by GC). Returns whether it existed. */
  async delete (hash: Hash): Promise<boolean> {
    assertHash(hash)
    if (!this.index.has(hash)) return false
    this.forget(hash)
    await unlink(this.pathOf(hash)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
    return true
  }

  /**
   * A batch writer for chunks whose hashes the caller computed itself (an import). Chunks are
   * made durable batch by batch, one batch writing while the next fills.
   */
  writer (): ChunkWriter {
    return new ChunkWriter(this)
  }

  /**
   * Protect chunks from GC until released: take a hold before writing the chunks of a manifest
   * that is not saved yet, and release it after ManifestStore.save.
   */
  hold (): ChunkHold {
    return new ChunkHold(this)
  }

  // ---- for ChunkWriter, ChunkHold and gc(): not part of the public API ----

  /** Promise quota bytes to a write, or throw QuotaExceededError. */
  reserve (bytes: number, what?: string): void {
    if (!quotaAllows(this.quotaBytes, this.storedBytes, this.reservedBytes, bytes)) {
      throw new QuotaExceededError(bytes, this.stats().freeBytes, this.quotaBytes, this.chunksDir, what)
    }
    this.reservedBytes += bytes
  }

  unreserve (bytes: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - bytes)
  }

  /** Write chunks (already reserved) durably; index them once their directory is fsynced. */
  async writeBatchDurably (chunks: PendingChunk[]): Promise<void> {
    await this.writeBatchFiles(chunks)
    try {
      await this.syncPrefixDirs(new Set(chunks.map((c) => c.hash.slice(0, 2))))
    } catch (err) {
      this.unreserve(chunks.reduce((n, c) => n + c.bytes.byteLength, 0))
      throw err
    }
    this.indexWritten(chunks.map((c) => ({ hash: c.hash, size: c.bytes.byteLength })))
  }

  /**
   * Steps 1-3 of a durable write: each chunk's bytes into a temp file, fdatasync'd, then renamed
   * to its final name. A chunk's name therefore never shows partial bytes. The renames are not yet
   * durable (a crash may drop them, never expose them half-written) and the chunks not yet indexed:
   * finish with syncPrefixDirs and indexWritten (which turns the quota reservation into stored
   * bytes). On failure nothing partial is left at a final name and the reservation is released.
   */
  async writeBatchFiles (chunks: PendingChunk[]): Promise<void> {
    const reserved = chunks.reduce((n, c) => n + c.bytes.byteLength, 0)
    const temps: string[] = []
    try {
      // 1. bytes into temp files, each fsynced (the pool runs several at once)
      await Promise.all(chunks.map(async (c, i) => {
        const tmp = join(this.tmpDir, `${c.hash}.${randomBytes(4).toString('hex')}`)
        temps[i] = tmp
        const fd = await open(tmp, 'wx', 0o444)
        try {
          await fd.writeFile(c.bytes)
          await fd.datasync()
        } finally {
          await fd.close()
        }
      }))
      // 2. prefix directories, made durable in the chunks directory before anything lands in them
      const newPrefixes = [...new Set(chunks.map((c) => c.hash.slice(0, 2)))].filter((p) => !this.prefixDirs.has(p))
      if (newPrefixes.length > 0) {
        await Promise.all(newPrefixes.map(async (p) => await mkdir(join(this.chunksDir, p), { recursive: true })))
        await fsyncDir(this.chunksDir)
        for (const p of newPrefixes) this.prefixDirs.add(p)
      }
      // 3. rename into place: from here each file is complete at its final name
      await Promise.all(chunks.map(async (c, i) => await rename(temps[i] as string, this.pathOf(c.hash))))
      temps.length = 0
    } catch (err) {
      await Promise.all(temps.filter(Boolean).map(async (t) => await unlink(t).catch(() => {})))
      this.unreserve(reserved)
      throw err
    }
  }

  /** Step 4: one fsync per touched prefix directory makes the renames durable. */
  async syncPrefixDirs (prefixes: Set<string>): Promise<void> {
    await Promise.all([...prefixes].map(async (p) => await fsyncDir(join(this.chunksDir, p))))
  }

  /** Step 5: durable chunks become visible to has(), stats() and GC accounting. */
  indexWritten (chunks: WrittenChunk[]): void {
    this.unreserve(chunks.reduce((n, c) => n + c.size, 0))
    for (const c of chunks) {
      if (!this.index.has(c.hash)) {
        this.index.set(c.hash, c.size)
        this.storedBytes += c.size
      }
      this.touch(c.hash)
    }
  }

  private forget (hash: Hash): void {
    const size = this.index.get(hash)
    if (size !== undefined) {
      this.index.delete(hash)
      this.storedBytes -= size
    }
  }

  /** Remember that a chunk was written or re-used while GC runs, so GC keeps it. */
  touch (hash: Hash): void {
    if (this.gcActive > 0) this.touchedDuringGc.add(hash)
  }

  addHold (hash: Hash): void {
    this.holds.set(hash, (this.holds.get(hash) ?? 0) + 1)
    this.touch(hash)
  }

  releaseHolds (hashes: Iterable<Hash>): void {
    if (this.gcActive > 0) {
      // a manifest saved during a GC pass is not in that pass's reference set: keep holding
      for (const h of hashes) this.deferredReleases.push(h)
      return
    }
    for (const h of hashes) {
      const n = (this.holds.get(h) ?? 0) - 1
      if (n <= 0) this.holds.delete(h)
      else this.holds.set(h, n)
    }
  }

  gcBegin (): void {
    this.gcActive++
  }

  /** Whether GC may delete this chunk: not held and not written or re-used since GC began. */
  gcMayDelete (hash: Hash): boolean {
    return !this.holds.has(hash) && !this.touchedDuringGc.has(hash)
  }

  gcEnd (): void {
    this.gcActive--
    if (this.gcActive === 0) {
      this.touchedDuringGc.clear()
      const deferred = this.deferredReleases
      this.deferredReleases = []
      this.releaseHolds(deferred)
    }
  }
}

/** Hashes protected from GC until release() (see ChunkStore.hold). */
export class ChunkHold {
  private readonly held = new Set<Hash>()
  private released = false
  constructor (private readonly store: ChunkStore) {}

  add (hash: Hash): void {
    if (this.released) throw new Error('chunk hold already released')
    if (this.held.has(hash)) return
    this.held.add(hash)
    this.store.addHold(hash)
  }

  release (): void {
    if (this.released) return
    this.released = true
    this.store.releaseHolds(this.held)
    this.held.clear()
  }
}

/**
 * Writes chunks in durability batches: the temp-file writes and fdatasyncs of one batch overlap,
 * and one batch is written while the caller fills the next. The directory fsyncs that make the
 * renames durable are done once per touched directory in flush(), which is when the chunks become
 * visible to has(). add() throws QuotaExceededError before writing past the quota.
 */
export class ChunkWriter {
  private batch: PendingChunk[] = []
  private readonly queued = new Set<Hash>()
  /** renamed into place, waiting for flush() to fsync their directories and index them */
  private written: WrittenChunk[] = []
  private inFlight: Promise<void> = Promise.resolve()
  private failure: unknown = undefined
  /** bytes newly stored by this writer */
  storedBytes = 0
  storedChunks = 0

  constructor (private readonly store: ChunkStore) {}

  /** Queue a chunk; returns false if it is already stored or queued. Bytes must not be reused. */
  async add (hash: Hash, bytes: Uint8Array): Promise<boolean> {
    if (this.failure !== undefined) throw this.failure
    if (this.store.has(hash)) {
      this.store.touch(hash)
      return false
    }
    if (this.queued.has(hash)) return false
    this.store.reserve(bytes.byteLength)
    this.queued.add(hash)
    this.batch.push({ hash, bytes })
    this.storedBytes += bytes.byteLength
    this.storedChunks++
    if (this.batch.length >= this.store.writeBatch) await this.startBatch()
    return true
  }

  private async startBatch (): Promise<void> {
    await this.inFlight
    if (this.failure !== undefined) throw this.failure
    const batch = this.batch
    this.batch = []
    if (batch.length === 0) return
    this.inFlight = this.store.writeBatchFiles(batch).then(
      () => { for (const c of batch) this.written.push({ hash: c.hash, size: c.bytes.byteLength }) },
      (err: unknown) => { this.failure = err }
    )
  }

  /** Write what is queued; resolves when every added chunk is durable and visible. */
  async flush (): Promise<void> {
    await this.startBatch()
    await this.inFlight
    if (this.failure !== undefined) throw this.failure
    const written = this.written
    this.written = []
    try {
      await this.store.syncPrefixDirs(new Set(written.map((c) => c.hash.slice(0, 2))))
    } catch (err) {
      this.store.unreserve(written.reduce((n, c) => n + c.size, 0))
      throw err
    }
    this.store.indexWritten(written)
    for (const c of written) this.queued.delete(c.hash)
  }

  /**
   * After an error: drop what is queued and give back its quota. Chunks already renamed into
   * place are complete, so they are made durable and indexed (gc removes them if unreferenced);
   * if even that fails, the next open() indexes them.
   */
  async abort (): Promise<void> {
    await this.inFlight
    for (const c of this.batch) this.store.unreserve(c.bytes.byteLength)
    this.batch = []
    const written = this.written
    this.written = []
    try {
      await this.store.syncPrefixDirs(new Set(written.map((c) => c.hash.slice(0, 2))))
      this.store.indexWritten(written)
    } catch {
      for (const c of written) this.store.unreserve(c.size)
    }
  }
}
