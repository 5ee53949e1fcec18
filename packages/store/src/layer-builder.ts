// Build a layer from chunks handed over as they become known, in any order, instead of reading
// a finished file (importLayer). A VM snapshot's memory is split from QEMU's stream chunk by
// chunk; hashing and storing each chunk right then takes the import off the clone's critical
// path. Same result as importLayer on the same bytes: zero chunks are not stored, chunks are
// held from GC with `hold`, and writes are batched and made durable by finish().
import { createHash } from 'node:crypto'
import type { ChunkHold, ChunkStore, ChunkWriter } from './chunk-store.js'
import { isAllZero, type Hash } from './hash.js'
import { chunkCount, chunkLength, computeLayerHash, type Layer, type LayerKind } from './manifest.js'
import { DEFAULT_CHUNK_SIZE } from './config.js'

export class LayerBuilder {
  private readonly chunks: Array<Hash | null | undefined>
  private readonly writer: ChunkWriter
  private filled = 0

  constructor (store: ChunkStore, readonly kind: LayerKind, readonly name: string, readonly size: number, private readonly hold: ChunkHold, readonly chunkSize = DEFAULT_CHUNK_SIZE) {
    this.chunks = new Array<Hash | null | undefined>(chunkCount(size, chunkSize)).fill(undefined)
    this.writer = store.writer()
  }

  /**
   * Chunk `index` of the layer; `bytes` null (or all zero) for a zero chunk. Each index once.
   * Returns the chunk's hash (null for a zero chunk) once it is queued for the store.
   */
  async put (index: number, bytes: Uint8Array | null): Promise<Hash | null> {
    if (!Number.isInteger(index) || index < 0 || index >= this.chunks.length) throw new RangeError(`chunk ${index} is outside layer ${this.name} (${this.chunks.length} chunks)`)
    if (this.chunks[index] !== undefined) throw new Error(`chunk ${index} of layer ${this.name} was given twice`)
    const want = chunkLength(this.size, this.chunkSize, index)
    if (bytes !== null && bytes.byteLength !== want) throw new RangeError(`chunk ${index} of layer ${this.name} has ${bytes.byteLength} bytes, expected ${want}`)
    let hash: Hash | null = null
    if (bytes !== null && !isAllZero(bytes)) {
      hash = createHash('sha256').update(bytes).digest('hex')
      this.hold.add(hash)
      await this.writer.add(hash, bytes)
    }
    this.chunks[index] = hash
    this.filled++
    return hash
  }

  /** Every chunk given: the chunks are durable, and the layer is described. */
  async finish (): Promise<Layer> {
    if (this.filled !== this.chunks.length) throw new Error(`layer ${this.name}: ${this.chunks.length - this.filled} of ${this.chunks.length} chunks never given`)
    await this.writer.flush()
    const chunks = this.chunks as Array<Hash | null>
    return { kind: this.kind, name: this.name, size: this.size, chunkSize: this.chunkSize, hash: computeLayerHash({ size: this.size, chunkSize: this.chunkSize, chunks }), chunks }
  }

  async abort (): Promise<void> {
    await this.writer.abort()
  }
}
