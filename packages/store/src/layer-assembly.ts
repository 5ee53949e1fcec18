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

export class ManifestAssembly {
  /** Where each distinct chunk goes: a chunk may repeat within and across layers. */
  private readonly places = new Map<Hash, Place[]>()
  private readonly written = new Set<Hash>()
  private readonly temps: string[]
  private files: FileHandle[] = []
  /** Writes run one after another; an error stops the assembly (finish() rethrows it). */
  private queue: Promise<void> = Promise.resolve()
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
    this.queue = this.queue.then(async () => {
      if (this.failure !== undefined || this.state !== 'open') return
      try {
        for (const p of places) await writeAll(this.files[p.layer] as FileHandle, data, p.offset)
      } catch (err) {
        this.failure = err as Error
      }
    })
  }

  /**
   * Every chunk is in the store now: copy in what never arrived (verified on read), then rename
   * the files into place. Rejects (and cleans up) if a write failed or a chunk is missing.
   */
  async finish (): Promise<void> {
    if (this.state !== 'open') throw new Error(`assembly is ${this.state}`)
    try {
      await this.queue
      if (this.failure !== undefined) throw this.failure
      for (const [hash, places] of this.places) {
        if (this.written.has(hash)) continue
        const data = await this.store.readVerified(hash)
        for (const p of places) {
          if (data.byteLength !== p.length) throw new Error(`chunk ${hash.slice(0, 16)}… has ${data.byteLength} bytes, its place needs ${p.length}`)
          await writeAll(this.files[p.layer] as FileHandle, data, p.offset)
        }
        this.written.add(hash)
      }
      for (const fd of this.files) await fd.close()
      this.files = []
      for (const [i, tmp] of this.temps.entries()) await rename(tmp, this.paths[i] as string)
      this.state = 'finished'
    } catch (err) {
      await this.abort()
      throw err
    }
  }

  /** Stops and removes the temp files. */
  async abort (): Promise<void> {
    if (this.state === 'finished' || this.state === 'aborted') return
    this.state = 'aborted'
    await this.queue.catch(() => {})
    for (const fd of this.files) await fd.close().catch(() => {})
    this.files = []
    for (const tmp of this.temps) await unlink(tmp).catch(() => {})
  }

  /** Chunks written so far (distinct), for progress and tests. */
  get chunksWritten (): number {
    return this.written.size
  }
}
