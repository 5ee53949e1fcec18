// Garbage collection: delete chunks no saved manifest references.
//
// Safety argument (a crash or a concurrent writer never loses a referenced chunk):
// - references are read from durable manifest files; if any manifest cannot be read, nothing is
//   deleted (an unreadable manifest might reference anything);
// - chunks held (imports/transfers whose manifest is not saved yet) or written or re-used while
//   the pass runs are kept, and holds released during the pass stay until it ends;
// - a crash mid-pass only leaves some garbage for the next pass.
import type { ChunkStore } from './chunk-store.js'
import type { ManifestStore } from './manifest-store.js'
import type { Hash } from './hash.js'

export interface GcResult {
  manifests: number
  referencedChunks: number
  deletedChunks: number
  deletedBytes: number
  keptUnreferenced: number
}

export async function gc (store: ChunkStore, manifests: ManifestStore): Promise<GcResult> {
  store.gcBegin()
  try {
    const ids = await manifests.list()
    const referenced = new Set<Hash>()
    for (const id of ids) {
      let m
      try {
        m = await manifests.load(id)
      } catch (err) {
        throw new Error(`gc stopped without deleting anything: manifest ${id.slice(0, 16)}… cannot be read (${(err as Error).message})`)
      }
      for (const l of m.layers) for (const h of l.chunks) if (h !== null) referenced.add(h)
    }
    const result: GcResult = { manifests: ids.length, referencedChunks: referenced.size, deletedChunks: 0, deletedBytes: 0, keptUnreferenced: 0 }
    for (const h of store.hashes()) {
      if (referenced.has(h)) continue
      if (!store.gcMayDelete(h)) { result.keptUnreferenced++; continue }
      const size = store.sizeOf(h) ?? 0
      if (await store.delete(h)) {
        result.deletedChunks++
        result.deletedBytes += size
      }
    }
    return result
  } finally {
    store.gcEnd()
  }
}
