// @vmesh/store: content-addressed chunk store and snapshot manifests.
// Hashes (chunk hashes, layer hashes, manifest ids) are lowercase hex SHA-256 strings throughout.
export { ChunkStore, ChunkHold, ChunkWriter } from './chunk-store.js'
export type { ChunkStoreOptions, ChunkStoreStats } from './chunk-store.js'
export { ManifestStore } from './manifest-store.js'
export { ImageCatalogue } from './image-catalogue.js'
export type { ImageEntry } from './image-catalogue.js'
export { importLayer } from './layer-import.js'
export type { ImportOptions, ImportProgress } from './layer-import.js'
export { materializeLayer } from './layer-export.js'
export { ManifestAssembly } from './layer-assembly.js'
export { LayerBuilder } from './layer-builder.js'
export type { MaterializeOptions } from './layer-export.js'
export { gc } from './gc.js'
export type { GcResult } from './gc.js'
export {
  createManifest, decodeManifest, encodeManifest, manifestId, validateManifest, computeLayerHash,
  chunkCount, chunkLength, isValidChunkSize, LAYER_KINDS
} from './manifest.js'
export type { Layer, LayerKind, Manifest } from './manifest.js'
export { manifestBytes, manifestStoredBytes, manifestChunks, missingChunks, missingBytes, isComplete } from './manifest-stats.js'
export type { ChunkInfo, ChunkPresence } from './manifest-stats.js'
export { QuotaExceededError, formatBytes } from './quota.js'
export { CorruptChunkError, ChunkNotFoundError, ManifestError, ManifestNotFoundError } from './errors.js'
export { isHash, sha256, sha256Bytes, type Hash } from './hash.js'
export { PIECE_SIZE, hasPieces, pieceCount, pieceHashes, piecesDigest, chunkPiecesDigest } from './pieces.js'
export * as storeConfig from './config.js'
