// Pieces digests: how they are computed, carried in a manifest and checked when decoded.
import { describe, it, expect, afterEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pb } from '@vmesh/wire'
import { ChunkStore } from './chunk-store.js'
import { importLayer } from './layer-import.js'
import { computeLayerHash, createManifest, decodeManifest, encodeManifest, validateManifest, type Layer, type Manifest } from './manifest.js'
import { manifestChunks } from './manifest-stats.js'
import { ManifestError } from './errors.js'
import { sha256 } from './hash.js'
import { chunkPiecesDigest, pieceHashes, piecesDigest, PIECE_SIZE } from './pieces.js'

const MiB = 1 << 20
const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

function withPieces (): Manifest {
  const a = randomBytes(MiB)
  const b = randomBytes(300 * 1024)
  const l: Layer = { kind: 'disk-base', name: 'vda', size: 3 * MiB + b.length, chunkSize: MiB, hash: '', chunks: [sha256(a), null, sha256(a), sha256(b)], pieces: [chunkPiecesDigest(a), null, chunkPiecesDigest(a), chunkPiecesDigest(b)] }
  l.hash = computeLayerHash(l)
  return createManifest({ name: 'img', createdAtMs: 1, layers: [l] })
}

function mutate (m: Manifest, f: (msg: any) => void): Uint8Array {
  const msg = pb.Manifest.decode(encodeManifest(m))
  f(msg)
  return pb.Manifest.encode(msg).finish()
}

describe('pieces digests', () => {
  it('is SHA-256 over the SHA-256 of each 256 KiB piece, the last one shorter', () => {
    const bytes = randomBytes(2 * PIECE_SIZE + 1000)
    const hashes = pieceHashes(bytes)
    expect(hashes).toHaveLength(3)
    expect(hashes[2]?.equals(createHash('sha256').update(bytes.subarray(2 * PIECE_SIZE)).digest())).toBe(true)
    expect(chunkPiecesDigest(bytes)).toBe(createHash('sha256').update(Buffer.concat(hashes)).digest('hex'))
    expect(piecesDigest(hashes)).toBe(chunkPiecesDigest(bytes))
    expect(() => piecesDigest([Buffer.alloc(31)])).toThrow(/31 bytes/)
  })

  it('round-trip in a manifest and reach its chunk list', () => {
    const m = withPieces()
    const bytes = encodeManifest(m)
    expect(decodeManifest(bytes)).toEqual(m)
    const chunks = manifestChunks(m)
    expect(chunks.map((c) => c.pieces)).toEqual([m.layers[0]?.pieces?.[0], m.layers[0]?.pieces?.[3]])
    // Without them the manifest is valid too (and has another id).
    const plain = { ...m, layers: m.layers.map(({ pieces: _, ...l }) => l) }
    expect(decodeManifest(encodeManifest(plain)).layers[0]?.pieces).toBeUndefined()
    expect(manifestChunks(plain)[0]?.pieces).toBeUndefined()
  })

  it('are refused unless every stored chunk of the layer has one of 32 bytes, and none on zero runs', () => {
    const m = withPieces()
    const rejected = (bytes: Uint8Array, re: RegExp): void => {
      expect(() => decodeManifest(bytes)).toThrow(ManifestError)
      expect(() => decodeManifest(bytes)).toThrow(re)
    }
    rejected(mutate(m, (msg) => { msg.layers[0].chunks[2].pieces = new Uint8Array(0) }), /pieces digests for 2 of its 3 stored chunks/)
    rejected(mutate(m, (msg) => { msg.layers[0].chunks[1].pieces = randomBytes(32) }), /pieces digest on a zero run/)
    rejected(mutate(m, (msg) => { msg.layers[0].chunks[0].pieces = randomBytes(31) }), /pieces digest of 31 bytes/)
    const small: Layer = { kind: 'boot', name: '', size: 10, chunkSize: 256 * 1024, hash: '', chunks: [sha256(Buffer.alloc(10, 1))], pieces: [sha256(Buffer.alloc(1))] }
    small.hash = computeLayerHash(small)
    expect(() => validateManifest({ version: 1, name: '', createdAtMs: 0, chunkSize: small.chunkSize, layers: [small] })).toThrow(/single pieces/)
    const misplaced = withPieces()
    const l = misplaced.layers[0] as Layer
    l.pieces = [null, null, l.pieces?.[2] ?? null, l.pieces?.[3] ?? null]
    expect(() => validateManifest(misplaced)).toThrow(/chunk 0 has a pieces digest only where it is stored/)
  })

  it('are computed by an import with chunks larger than a piece, and only then', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmesh-pieces-'))
    dirs.push(dir)
    const store = await ChunkStore.open({ dir: join(dir, 'store') })
    const data = Buffer.concat([randomBytes(MiB), Buffer.alloc(MiB), randomBytes(MiB / 2)])
    await writeFile(join(dir, 'f'), data)
    const layer = await importLayer(store, join(dir, 'f'), 'disk-base', { chunkSize: MiB })
    expect(layer.pieces).toEqual([chunkPiecesDigest(data.subarray(0, MiB)), null, chunkPiecesDigest(data.subarray(2 * MiB))])
    const small = await importLayer(store, join(dir, 'f'), 'disk-base', { chunkSize: PIECE_SIZE })
    expect(small.pieces).toBeUndefined()
  })
})
