// Manifests: a snapshot as ordered layers of chunks (schema and its rules: proto/manifest.proto).
// In memory a layer's chunk list is expanded, one entry per chunk: a Hash, or null for an all-zero
// chunk that is never stored. On the wire zero chunks are run-length encoded.
//
// Decoding is for untrusted bytes: every size and count is bounded before anything is allocated
// from it, the layer hashes are recomputed, and the bytes must be the canonical encoding.
import { createHash } from 'node:crypto'
import { pb, type vmesh } from '@vmesh/wire'
import { bytesToHash, HASH_BYTES, hashToBytes, isHash, sha256, zeroChunkDigest, type Hash } from './hash.js'
import { ManifestError } from './errors.js'
import { hasPieces } from './pieces.js'
import {
  MANIFEST_VERSION, MAX_CHUNK_SIZE, MAX_LAYER_BYTES, MAX_LAYERS, MAX_MANIFEST_BYTES, MAX_MANIFEST_CHUNKS,
  MAX_NAME_LENGTH, MIN_CHUNK_SIZE
} from './config.js'

export type LayerKind = 'disk-base' | 'disk-delta' | 'memory' | 'device-state' | 'boot' | 'vm-spec'
export const LAYER_KINDS: readonly LayerKind[] = ['disk-base', 'disk-delta', 'memory', 'device-state', 'boot', 'vm-spec']

const KIND_TO_PB: Record<LayerKind, number> = {
  'disk-base': pb.LayerKind.LAYER_KIND_DISK_BASE,
  'disk-delta': pb.LayerKind.LAYER_KIND_DISK_DELTA,
  memory: pb.LayerKind.LAYER_KIND_MEMORY,
  'device-state': pb.LayerKind.LAYER_KIND_DEVICE_STATE,
  boot: pb.LayerKind.LAYER_KIND_BOOT,
  'vm-spec': pb.LayerKind.LAYER_KIND_VM_SPEC
}
const PB_TO_KIND = new Map<number, LayerKind>(LAYER_KINDS.map((k) => [KIND_TO_PB[k], k]))

export interface Layer {
  kind: LayerKind
  /** role within the snapshot, e.g. "vda" or "ram"; may be empty */
  name: string
  /** bytes of content */
  size: number
  /** bytes per chunk (equal to the manifest's); the last chunk may be shorter */
  chunkSize: number
  /** content hash of the layer (see proto/manifest.proto) */
  hash: Hash
  /** ceil(size / chunkSize) entries: the chunk's hash, or null for an all-zero chunk */
  chunks: Array<Hash | null>
  /**
   * Optional, only when chunkSize > PIECE_SIZE: each chunk's pieces digest (pieces.ts), null
   * exactly where `chunks` is null. Lets a relay pass a chunk on while it arrives; a layer without
   * it is moved whole chunk by whole chunk.
   */
  pieces?: Array<Hash | null>
}

export interface Manifest {
  version: number
  name: string
  createdAtMs: number
  chunkSize: number
  layers: Layer[]
}

export function chunkCount (size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize)
}

/** Length in bytes of chunk `index` of a layer. */
export function chunkLength (size: number, chunkSize: number, index: number): number {
  return Math.min(chunkSize, size - index * chunkSize)
}

/** Computes a layer hash incrementally, one chunk digest at a time, in order. */
export class LayerHasher {
  private readonly h = createHash('sha256')
  constructor (size: number, chunkSize: number) {
    const head = Buffer.alloc(15 + 8 + 4)
    head.write('vmesh.layer.v1\0', 0, 'latin1')
    head.writeBigUInt64BE(BigInt(size), 15)
    head.writeUInt32BE(chunkSize, 23)
    this.h.update(head)
  }

  /** The SHA-256 digest (32 raw bytes) of the next chunk. */
  chunk (digest: Uint8Array): void {
    this.h.update(digest)
  }

  zeroChunk (length: number): void {
    this.h.update(zeroChunkDigest(length))
  }

  digest (): Hash {
    return this.h.digest('hex')
  }
}

/** The layer hash recomputed from a layer's chunk list. */
export function computeLayerHash (layer: Pick<Layer, 'size' | 'chunkSize' | 'chunks'>): Hash {
  const hasher = new LayerHasher(layer.size, layer.chunkSize)
  layer.chunks.forEach((c, i) => {
    if (c === null) hasher.zeroChunk(chunkLength(layer.size, layer.chunkSize, i))
    else hasher.chunk(hashToBytes(c))
  })
  return hasher.digest()
}

function fail (msg: string): never {
  throw new ManifestError(`invalid manifest: ${msg}`)
}

function checkName (name: unknown, what: string): void {
  if (typeof name !== 'string') fail(`${what} is not a string`)
  if (name.length > MAX_NAME_LENGTH) fail(`${what} has ${name.length} characters, at most ${MAX_NAME_LENGTH} allowed`)
}

/** Whether a manifest may declare this chunk size: a power of two in MIN_CHUNK_SIZE..MAX_CHUNK_SIZE. */
export function isValidChunkSize (n: number): boolean {
  return Number.isSafeInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0
}

/** Throws ManifestError unless the manifest keeps every rule and bound of format version 1. */
export function validateManifest (m: Manifest): void {
  if (m.version !== MANIFEST_VERSION) fail(`version ${m.version} is not supported (this build reads version ${MANIFEST_VERSION})`)
  checkName(m.name, 'name')
  if (!Number.isSafeInteger(m.createdAtMs) || m.createdAtMs < 0) fail(`createdAtMs ${m.createdAtMs} is not a time`)
  if (!isValidChunkSize(m.chunkSize)) {
    fail(`chunk size ${m.chunkSize} must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`)
  }
  if (!Array.isArray(m.layers) || m.layers.length === 0 || m.layers.length > MAX_LAYERS) {
    fail(`has ${m.layers?.length} layers, 1..${MAX_LAYERS} allowed`)
  }
  let total = 0
  m.layers.forEach((l, li) => {
    const at = `layer ${li}`
    if (!LAYER_KINDS.includes(l.kind)) fail(`${at} has unknown kind ${String(l.kind)}`)
    checkName(l.name, `${at} name`)
    if (!Number.isSafeInteger(l.size) || l.size < 0 || l.size > MAX_LAYER_BYTES) fail(`${at} size ${l.size} is outside 0..${MAX_LAYER_BYTES}`)
    if (l.chunkSize !== m.chunkSize) fail(`${at} chunk size ${l.chunkSize} differs from the manifest's ${m.chunkSize}`)
    const want = chunkCount(l.size, l.chunkSize)
    if (l.chunks.length !== want) fail(`${at} lists ${l.chunks.length} chunks, its size needs ${want}`)
    total += want
    if (total > MAX_MANIFEST_CHUNKS) fail(`more than ${MAX_MANIFEST_CHUNKS} chunks in all`)
    for (const c of l.chunks) if (c !== null && !isHash(c)) fail(`${at} has a chunk hash that is not 64 hex characters`)
    if (l.pieces !== undefined) {
      if (!hasPieces(l.chunkSize)) fail(`${at} has pieces digests, but its chunks of ${l.chunkSize} bytes are single pieces`)
      if (!Array.isArray(l.pieces) || l.pieces.length !== l.chunks.length) fail(`${at} has ${l.pieces?.length} pieces digests for ${l.chunks.length} chunks`)
      l.pieces.forEach((d, i) => {
        if ((d === null) !== (l.chunks[i] === null)) fail(`${at} chunk ${i} has a pieces digest only where it is ${d === null ? 'stored' : 'a zero chunk'}`)
        if (d !== null && !isHash(d)) fail(`${at} chunk ${i} has a pieces digest that is not 64 hex characters`)
      })
    }
    if (!isHash(l.hash)) fail(`${at} hash is not 64 hex characters`)
    if (computeLayerHash(l) !== l.hash) fail(`${at} hash does not match its chunk list`)
  })
}

function toPb (m: Manifest): vmesh.v1.Manifest {
  const layers = m.layers.map((l) => {
    const chunks: vmesh.v1.ChunkRef[] = []
    let zeros = 0
    l.chunks.forEach((c, i) => {
      if (c === null) { zeros++; return }
      if (zeros > 0) { chunks.push(pb.ChunkRef.create({ zeroChunks: zeros })); zeros = 0 }
      const pieces = l.pieces?.[i]
      chunks.push(pb.ChunkRef.create(pieces == null ? { hash: hashToBytes(c) } : { hash: hashToBytes(c), pieces: hashToBytes(pieces) }))
    })
    if (zeros > 0) chunks.push(pb.ChunkRef.create({ zeroChunks: zeros }))
    return pb.Layer.create({ kind: KIND_TO_PB[l.kind] as vmesh.v1.LayerKind, size: l.size, hash: hashToBytes(l.hash), chunks, name: l.name })
  })
  return pb.Manifest.create({ version: m.version, name: m.name, createdAtMs: m.createdAtMs, chunkSize: m.chunkSize, layers, layerCount: layers.length })
}

/** The canonical encoding (validated first). Its SHA-256 is the manifest's id. */
export function encodeManifest (m: Manifest): Uint8Array {
  validateManifest(m)
  return pb.Manifest.encode(toPb(m)).finish()
}

/** A manifest's id: SHA-256 of its canonical encoding, as hex. */
export function manifestId (m: Manifest | Uint8Array): Hash {
  return sha256(m instanceof Uint8Array ? m : encodeManifest(m))
}

/** Decode untrusted bytes. Throws ManifestError (never anything else) when they are not a valid manifest. */
export function decodeManifest (bytes: Uint8Array): Manifest {
  if (!(bytes instanceof Uint8Array)) fail('not bytes')
  if (bytes.byteLength > MAX_MANIFEST_BYTES) fail(`${bytes.byteLength} bytes, at most ${MAX_MANIFEST_BYTES} allowed`)
  let msg: vmesh.v1.Manifest
  try {
    msg = pb.Manifest.decode(bytes)
  } catch (err) {
    fail(`does not decode (${(err as Error).message})`)
  }
  const chunkSize = msg.chunkSize
  if (!isValidChunkSize(chunkSize)) {
    fail(`chunk size ${chunkSize} must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`)
  }
  if (msg.layers.length > MAX_LAYERS) fail(`has ${msg.layers.length} layers, at most ${MAX_LAYERS} allowed`)
  if (msg.layerCount !== msg.layers.length) fail(`says ${msg.layerCount} layers but holds ${msg.layers.length} (truncated?)`)
  let total = 0
  const layers: Layer[] = msg.layers.map((pl, li) => {
    const at = `layer ${li}`
    const size = Number(pl.size ?? 0)
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_LAYER_BYTES) fail(`${at} size ${size} is outside 0..${MAX_LAYER_BYTES}`)
    const want = chunkCount(size, chunkSize)
    total += want
    if (total > MAX_MANIFEST_CHUNKS) fail(`more than ${MAX_MANIFEST_CHUNKS} chunks in all`)
    const chunks: Array<Hash | null> = []
    const pieces: Array<Hash | null> = []
    let withPieces = 0
    for (const ref of pl.chunks ?? []) {
      const hash = ref.hash ?? new Uint8Array(0)
      const zeros = Number(ref.zeroChunks ?? 0)
      const digest = ref.pieces ?? new Uint8Array(0)
      if (hash.byteLength > 0 && zeros > 0) fail(`${at} has a chunk entry with both a hash and a zero run`)
      if (digest.byteLength > 0 && hash.byteLength === 0) fail(`${at} has a pieces digest on a zero run`)
      if (hash.byteLength > 0) {
        if (hash.byteLength !== HASH_BYTES) fail(`${at} has a chunk hash of ${hash.byteLength} bytes, not ${HASH_BYTES}`)
        if (digest.byteLength > 0 && digest.byteLength !== HASH_BYTES) fail(`${at} has a pieces digest of ${digest.byteLength} bytes, not ${HASH_BYTES}`)
        if (chunks.length + 1 > want) fail(`${at} lists more chunks than its size ${size} needs (${want})`)
        chunks.push(bytesToHash(hash))
        pieces.push(digest.byteLength > 0 ? bytesToHash(digest) : null)
        if (digest.byteLength > 0) withPieces++
      } else {
        if (!Number.isSafeInteger(zeros) || zeros < 1) fail(`${at} has an empty chunk entry`)
        if (chunks.length + zeros > want) fail(`${at} lists more chunks than its size ${size} needs (${want})`)
        for (let i = 0; i < zeros; i++) { chunks.push(null); pieces.push(null) }
      }
    }
    const stored = chunks.reduce((n, c) => (c === null ? n : n + 1), 0)
    if (withPieces > 0 && withPieces !== stored) fail(`${at} has pieces digests for ${withPieces} of its ${stored} stored chunks; a layer has them for all or none`)
    const kind = PB_TO_KIND.get(pl.kind ?? 0)
    if (kind === undefined) fail(`${at} has unknown kind ${pl.kind}`)
    const lh = pl.hash ?? new Uint8Array(0)
    if (lh.byteLength !== HASH_BYTES) fail(`${at} hash has ${lh.byteLength} bytes, not ${HASH_BYTES}`)
    return { kind, name: pl.name ?? '', size, chunkSize, hash: bytesToHash(lh), chunks, ...(withPieces > 0 ? { pieces } : {}) }
  })
  const m: Manifest = { version: msg.version, name: msg.name, createdAtMs: Number(msg.createdAtMs), chunkSize, layers }
  validateManifest(m)
  const canonical = pb.Manifest.encode(toPb(m)).finish()
  if (!Buffer.from(canonical).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    fail('bytes are not the canonical encoding (unknown fields, defaults written out, or unmerged zero runs)')
  }
  return m
}

/** Build a manifest from imported layers (they must share one chunk size). */
export function createManifest (opts: { name: string, layers: Layer[], createdAtMs?: number }): Manifest {
  const first = opts.layers[0]
  if (first === undefined) throw new ManifestError('a manifest needs at least one layer')
  const m: Manifest = {
    version: MANIFEST_VERSION,
    name: opts.name,
    createdAtMs: opts.createdAtMs ?? Date.now(),
    chunkSize: first.chunkSize,
    layers: opts.layers
  }
  validateManifest(m)
  return m
}
