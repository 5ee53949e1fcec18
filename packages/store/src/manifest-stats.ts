// What a manifest costs: its size, and what a host still lacks of it (for transfer and placement).
import type { Hash } from './hash.js'
import { chunkLength, type Manifest } from './manifest.js'

/** A stored chunk: its hash, length and, where the manifest has it, its pieces digest (pieces.ts). */
export interface ChunkInfo { hash: Hash, size: number, pieces?: Hash }

/** Every distinct stored (non-zero) chunk of a manifest with its size, in first-use order. */
export function manifestChunks (manifest: Manifest): ChunkInfo[] {
  const seen = new Set<Hash>()
  const out: ChunkInfo[] = []
  for (const layer of manifest.layers) {
    layer.chunks.forEach((h, i) => {
      if (h === null || seen.has(h)) return
      seen.add(h)
      const info: ChunkInfo = { hash: h, size: chunkLength(layer.size, layer.chunkSize, i) }
      const pieces = layer.pieces?.[i]
      if (pieces != null) info.pieces = pieces
      out.push(info)
    })
  }
  return out
}

/** Total logical bytes of the snapshot (sum of layer sizes, zeros included). */
export function manifestBytes (manifest: Manifest): number {
  return manifest.layers.reduce((n, l) => n + l.size, 0)
}

/** Bytes that must be stored or sent: distinct non-zero chunks. */
export function manifestStoredBytes (manifest: Manifest): number {
  return manifestChunks(manifest).reduce((n, c) => n + c.size, 0)
}

export interface ChunkPresence { has: (hash: Hash) => boolean }

/** Distinct chunks of the manifest the store lacks, in first-use order (zero chunks never count). */
export function missingChunks (store: ChunkPresence, manifest: Manifest): Hash[] {
  return manifestChunks(manifest).filter((c) => !store.has(c.hash)).map((c) => c.hash)
}

/** Bytes the store still lacks to hold the manifest completely: the transfer cost of a host. */
export function missingBytes (store: ChunkPresence, manifest: Manifest): number {
  return manifestChunks(manifest).reduce((n, c) => (store.has(c.hash) ? n : n + c.size), 0)
}

/** Whether the store holds every chunk of the manifest. */
export function isComplete (store: ChunkPresence, manifest: Manifest): boolean {
  return manifest.layers.every((l) => l.chunks.every((h) => h === null || store.has(h)))
}
