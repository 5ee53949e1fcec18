// Materialise a manifest's layers while its chunks arrive, instead of after: a host receiving a
// VM snapshot writes each verified chunk into the layer files at once (page cache, no fsync), so
// when the transfer ends the files are ready and a clone starts without a second pass over the
// store. Chunks the host held before the transfer (never "arrive") are copied from the store by
// finish(). Like materializeLayer, files are built under temp names and renamed into place, with
// zero chunks left as holes. The files are derived data: a crash before finish() leaves only
// temp files, and the caller materialises again from the store.
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import type { ChunkStore } from './chunk-store.js'
import { tempNameFor, writeAll } from './durable-file.js'
import type { Hash } from './hash.js'
import { chunkLength, type Manifest } from './manifest.js'

interface Place { layer: number, offset: number, length: number }

/**
 * Chunk writes in flight at once. Each waits its turn in libuv's thread pool, which on a busy
 * host takes tens of ms; one at a time, the writes fell behind the transfer and the clone waited
 * 0.5-2.3 s for the backlog after the last chunk arrived.
 */
const MAX_WRITES = 8

export class ManifestAssembly {
  /** Where each distinct chunk goes: a chunk may repeat within and across layers. */
  private readonly places = new Map<Hash, Place[]>()
  /** Chunks queued for writing (or written); onDisk: those whose writes are done. */
  private readonly written = new Set<Hash>()
  private readonly onDisk = new Set<Hash>()
  /** Layers being or already renamed into place, by ready() or finish(): each renamed once. */
  private readonly placing = new Map<number, Promise<void>>()
  /** ready() calls waiting for writes to finish. */
  private readonly waiters = new Set<() => void>()
  private readonly temps: string[]
  private files: FileHandle[] = []
  /** Writes waiting for a slot, and how many run (at most MAX_WRITES); an error stops the assembly (finish() rethrows it). */
  private readonly waiting: Array<() => Promise<void>> = []
  private running = 0
  private readonly idleWaiters = new Set<() => void>()
  private failure: Error | undefined
  private state: 'new' | 'open' | 'finished' | 'aborted' = 'new'

  /** `paths[i]` is where layer i goes. */
  constructor (private readonly store: ChunkStore, private readonly manifest: Manifest, private readonly paths: string[]) {
    if (paths.length !== manifest.layers.length) throw new Error(`assembly: ${paths.length} paths for ${manifest.layers.length} layers`)
    manifest.layers.forEach((layer, li) => {
      layer.chunks.forEach((h, ci) => {
        if (h === null) return
        const list = this.places.get(h) ?? []
        list.push({ layer: li, offset: ci * layer.chunkSize, length: chunkLength(layer.size, layer.chunkSize, ci) })
        this.places.set(h, list)
      })
    })
    this.temps = paths.map((p) => tempNameFor(p))
  }

  /** Creates the (sparse, full-size) temp files. */
  async open (): Promise<void> {
    if (this.state !== 'new') throw new Error('assembly already opened')
    this.state = 'open'
    try {
      for (const [i, tmp] of this.temps.entries()) {
        const fd = await open(tmp, 'wx', 0o644)
        this.files.push(fd)
        await fd.truncate(this.manifest.layers[i]?.size ?? 0)
      }
    } catch (err) {
      await this.abort()
      throw err
    }
  }

  /**
   * A verified chunk arrived: queue its writes (every place it occupies). Bytes that are not a
   * chunk of this manifest, or of the wrong length, are ignored; the caller verified the hash.
   */
  put (hash: Hash, data: Uint8Array): void {
    if (this.state !== 'open' || this.written.has(hash)) return
    const places = this.places.get(hash)
    if (places === undefined || places.some((p) => p.length !== data.byteLength)) return
    this.written.add(hash)
    this.enqueue(hash, places, async () => data)
  }

  private enqueue (hash: Hash, places: Place[], bytes: () => Promise<Uint8Array>): void {
    this.waiting.push(async () => {
      if (this.failure !== undefined || this.state !== 'open') return
      try {
        const data = await bytes()
        for (const p of places) {
          if (data.byteLength !== p.length) throw new Error(`chunk ${hash.slice(0, 16)}… has ${data.byteLength} bytes, its place needs ${p.length}`)
          await writeAll(this.files[p.layer] as FileHandle, data, p.offset)
        }
        this.onDisk.add(hash)
      } catch (err) {
        this.failure ??= err as Error
      }
      this.wake()
    })
    this.pump()
  }

  private pump (): void {
    while (this.running < MAX_WRITES && this.waiting.length > 0) {
      const write = this.waiting.shift() as () => Promise<void>
      this.running++
      void write().finally(() => {
        this.running--
        this.pump()
        if (this.running === 0 && this.waiting.length === 0) {
          for (const w of this.idleWaiters) w()
          this.idleWaiters.clear()
        }
      })
    }
  }

  /** Resolves once no write is waiting or running. */
  private async idle (): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return
    await new Promise<void>((resolve) => this.idleWaiters.add(resolve))
  }

  /**
   * Queues every chunk the store already holds to be copied in now: chunks held from before (an
   * earlier snapshot of the same VM), and those a live push delivered before its manifest named
   * them that are no longer in memory. Left for finish(), they were read and verified on the
   * clone's critical path: 24-29 chunks, ~1 s, in the lab. Layers other than memory go first, as
   * a clone's QEMU starts on them (ready()).
   */
  copyHeldChunks (): void {
    if (this.state !== 'open') return
    const order = [...this.manifest.layers].sort((x, y) => Number(x.kind === 'memory') - Number(y.kind === 'memory'))
    for (const l of order) {
      for (const h of l.chunks) if (h !== null && !this.written.has(h) && this.store.has(h)) this.copyFromStore(h)
    }
  }

  /** Queues a chunk that never arrived to be written from the store (verified on read). */
  private copyFromStore (hash: Hash): void {
    this.written.add(hash)
    this.enqueue(hash, this.places.get(hash) as Place[], async () => await this.store.readVerified(hash))
  }

  private wake (): void {
    for (const w of this.waiters) w()
    this.waiters.clear()
  }

  /**
   * Some layers before the rest: resolves once every chunk of the layers `complete` is written
   * (chunks the store held before are copied in now) and their files, and those of `early`, are
   * renamed into place. The `early` files are still being written: their users must wait for
   * finish(). A winner of a clone starts QEMU on a snapshot's disk and boot files, with the
   * memory file mapped, while the memory still arrives. Rejects if the assembly fails or stops.
   */
  async ready (complete: number[], early: number[] = []): Promise<void> {
    if (this.state === 'finished') return // every file is in place
    if (this.state !== 'open') throw new Error(`assembly is ${this.state}`)
    const needed = new Set<Hash>()
    for (const li of complete) for (const h of this.manifest.layers[li]?.chunks ?? []) if (h !== null) needed.add(h)
    for (const h of needed) if (!this.written.has(h) && this.store.has(h)) this.copyFromStore(h)
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      if ((this.state as string) === 'finished') return // finish() placed every file meanwhile
      if (this.state !== 'open') throw new Error(`assembly is ${this.state}`)
      if ([...needed].every((h) => this.onDisk.has(h))) break
      await new Promise<void>((resolve) => this.waiters.add(resolve))
    }
    for (const li of [...complete, ...early]) await this.place(li)
  }

  /** Renames layer li's file into place, once, whoever asks first (ready() and finish() may overlap). */
  private async place (li: number): Promise<void> {
    const tmp = this.temps[li]
    if (tmp === undefined) return
    let renamed = this.placing.get(li)
    if (renamed === undefined) {
      renamed = rename(tmp, this.paths[li] as string)
      this.placing.set(li, renamed)
    }
    await renamed
  }

  /**
   * Every chunk is in the store now: copy in what never arrived (verified on read), then rename
   * the files into place. Rejects (and cleans up) if a write failed or a chunk is missing.
   */
  async finish (): Promise<void> {
    if (this.state !== 'open') throw new Error(`assembly is ${this.state}`)
    try {
      await this.idle()
      if (this.failure !== undefined) throw this.failure
      for (const hash of this.places.keys()) if (!this.written.has(hash)) this.copyFromStore(hash)
      await this.idle()
      if (this.failure !== undefined) throw this.failure
      for (const fd of this.files) await fd.close()
      this.files = []
      for (const i of this.temps.keys()) await this.place(i)
      this.state = 'finished'
      this.wake()
    } catch (err) {
      await this.abort()
      throw err
    }
  }

  /** Stops and removes the temp files. */
  async abort (): Promise<void> {
    if (this.state === 'finished' || this.state === 'aborted') return
    this.state = 'aborted'
    await this.idle()
    await Promise.allSettled(this.placing.values())
    for (const fd of this.files) await fd.close().catch(() => {})
    this.files = []
    for (const [i, tmp] of this.temps.entries()) {
      await unlink(tmp).catch(() => {})
      if (this.placing.has(i)) await unlink(this.paths[i] as string).catch(() => {})
    }
    this.wake()
  }

  /** Chunks written so far (distinct), for progress and tests. */
  get chunksWritten (): number {
    return this.written.size
  }
}
