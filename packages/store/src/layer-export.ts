// Materialise a layer back into a file, bit-identical to what was imported. Zero chunks become
// holes: the file is sized with ftruncate and only non-zero chunks are written at their offsets.
// The file is built under a temp name and renamed into place once complete and fsynced.
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { ChunkStore } from './chunk-store.js'
import { chunkLength, type Layer } from './manifest.js'
import { fsyncDir, tempNameFor, writeAll } from './durable-file.js'

export interface MaterializeOptions {
  /** chunks read ahead of the write position (default 4) */
  readAhead?: number
  onProgress?: (p: { doneBytes: number, totalBytes: number }) => void
}

/**
 * Write `layer` to `path` (replacing any file there). Every chunk is verified as it is read; a
 * missing or corrupt chunk aborts the export with the store's error and leaves `path` untouched.
 */
export async function materializeLayer (store: ChunkStore, layer: Layer, path: string, opts: MaterializeOptions = {}): Promise<void> {
  const tmp = tempNameFor(path)
  const fd = await open(tmp, 'wx', 0o644)
  const readAhead = Math.max(1, opts.readAhead ?? 4)
  try {
    await fd.truncate(layer.size)
    const indices: number[] = []
    layer.chunks.forEach((h, i) => { if (h !== null) indices.push(i) })
    const reads = new Map<number, Promise<Uint8Array>>()
    const startRead = (k: number): void => {
      const i = indices[k]
      if (i === undefined || reads.has(k)) return
      const p = store.readVerified(layer.chunks[i] as string)
      p.catch(() => {}) // surfaced when awaited below
      reads.set(k, p)
    }
    let done = 0
    for (let k = 0; k < indices.length; k++) {
      for (let a = k; a < k + readAhead; a++) startRead(a)
      const i = indices[k] as number
      const bytes = await (reads.get(k) as Promise<Uint8Array>)
      reads.delete(k)
      const want = chunkLength(layer.size, layer.chunkSize, i)
      if (bytes.byteLength !== want) throw new Error(`chunk ${i} of layer ${layer.hash.slice(0, 16)}… has ${bytes.byteLength} bytes, the layer needs ${want}`)
      await writeAll(fd, bytes.subarray(0, want), i * layer.chunkSize)
      done += want
      opts.onProgress?.({ doneBytes: done, totalBytes: layer.size })
    }
    await fd.sync()
    await fd.close()
  } catch (err) {
    await fd.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
  await rename(tmp, path)
  await fsyncDir(dirname(path))
}
