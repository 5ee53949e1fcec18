// Import a file as a layer: read it chunk by chunk, hash each chunk, store the new ones.
//
// Sparse files: Node has no lseek(SEEK_DATA/SEEK_HOLE), so holes are found by content: a chunk
// that reads as all zeros is recorded as a zero chunk and never stored. Reading a hole costs no
// disk I/O (the kernel returns zeros) and the zero test is a memcmp, so holes import at memory
// speed. Reading the next chunk overlaps hashing this one; writes go through ChunkWriter batches.
import { open } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import type { ChunkHold, ChunkStore } from './chunk-store.js'
import { isAllZero, type Hash } from './hash.js'
import { chunkPiecesDigest, hasPieces } from './pieces.js'
import { chunkCount, chunkLength, isValidChunkSize, LayerHasher, type Layer, type LayerKind } from './manifest.js'
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_LAYER_BYTES, MIN_CHUNK_SIZE } from './config.js'
import { QuotaExceededError } from './quota.js'

export interface ImportProgress {
  doneBytes: number
  totalBytes: number
  /** bytes newly written to the store so far */
  storedBytes: number
  zeroChunks: number
  /** chunks the store already had */
  reusedChunks: number
}

export interface ImportOptions {
  /** layer role, e.g. "vda" */
  name?: string
  chunkSize?: number
  /**
   * Keeps the layer's chunks from GC after the import returns; release it once the manifest that
   * references them is saved. Without one, chunks are protected only while the import runs.
   */
  hold?: ChunkHold
  onProgress?: (p: ImportProgress) => void
}

export async function importLayer (store: ChunkStore, path: string, kind: LayerKind, opts: ImportOptions = {}): Promise<Layer> {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE
  if (!isValidChunkSize(chunkSize)) {
    throw new RangeError(`chunk size ${chunkSize} must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`)
  }
  const hold = opts.hold ?? store.hold()
  const fd = await open(path, 'r')
  const writer = store.writer()
  const freeAtStart = store.stats().freeBytes
  try {
    const size = (await fd.stat()).size
    if (size > MAX_LAYER_BYTES) throw new RangeError(`${path} has ${size} bytes; a layer holds at most ${MAX_LAYER_BYTES}`)
    const count = chunkCount(size, chunkSize)
    const hasher = new LayerHasher(size, chunkSize)
    const chunks: Array<Hash | null> = []
    // Pieces digests let the swarm pass a chunk on while it arrives (pieces.ts): one more hash pass.
    const pieces: Array<Hash | null> | undefined = hasPieces(chunkSize) ? [] : undefined
    const progress: ImportProgress = { doneBytes: 0, totalBytes: size, storedBytes: 0, zeroChunks: 0, reusedChunks: 0 }
    const readChunk = async (i: number): Promise<Buffer> => {
      const len = chunkLength(size, chunkSize, i)
      const buf = Buffer.allocUnsafe(len)
      let got = 0
      while (got < len) {
        const { bytesRead } = await fd.read(buf, got, len - got, i * chunkSize + got)
        if (bytesRead === 0) throw new Error(`${path} shrank while being imported (at byte ${i * chunkSize + got} of ${size})`)
        got += bytesRead
      }
      return buf
    }
    let quotaError: QuotaExceededError | undefined
    let neededAfterQuota = 0
    const seenAfterQuota = new Set<Hash>()
    let next = count > 0 ? readChunk(0) : undefined
    for (let i = 0; i < count; i++) {
      const buf = await (next as Promise<Buffer>)
      next = i + 1 < count ? readChunk(i + 1) : undefined
      if (isAllZero(buf)) {
        chunks.push(null)
        pieces?.push(null)
        hasher.zeroChunk(buf.byteLength)
        progress.zeroChunks++
      } else {
        const digest = createHash('sha256').update(buf).digest()
        const hash = digest.toString('hex')
        hasher.chunk(digest)
        chunks.push(hash)
        pieces?.push(chunkPiecesDigest(buf))
        if (quotaError !== undefined) {
          // over quota: keep hashing only to tell the person how much the whole import needs
          if (!store.has(hash) && !seenAfterQuota.has(hash)) { seenAfterQuota.add(hash); neededAfterQuota += buf.byteLength }
        } else {
          hold.add(hash)
          try {
            if (await writer.add(hash, buf)) progress.storedBytes += buf.byteLength
            else progress.reusedChunks++
          } catch (err) {
            if (!(err instanceof QuotaExceededError)) throw err
            quotaError = err
            seenAfterQuota.add(hash)
            neededAfterQuota += buf.byteLength
          }
        }
      }
      progress.doneBytes += buf.byteLength
      opts.onProgress?.({ ...progress })
    }
    if (quotaError !== undefined) {
      await writer.abort()
      const need = progress.storedBytes + neededAfterQuota
      throw new QuotaExceededError(need, freeAtStart, store.quotaBytes, store.chunksDir, `importing ${path} as a layer`)
    }
    await writer.flush()
    return { kind, name: opts.name ?? '', size, chunkSize, hash: hasher.digest(), chunks, ...(pieces?.some((d) => d !== null) === true ? { pieces } : {}) }
  } catch (err) {
    await writer.abort().catch(() => {})
    throw err
  } finally {
    await fd.close()
    if (opts.hold === undefined) hold.release()
  }
}
