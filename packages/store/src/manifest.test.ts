import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { pb } from '@vmesh/wire'
import {
  computeLayerHash, createManifest, decodeManifest, encodeManifest, manifestId, validateManifest, type Layer, type Manifest
} from './manifest.js'
import { ManifestError } from './errors.js'
import { sha256 } from './hash.js'
import { manifestBytes, manifestStoredBytes, missingBytes, missingChunks, isComplete } from './manifest-stats.js'

const CS = 1 << 20
const h = (s: string): string => sha256(Buffer.from(s))

function layer (kind: Layer['kind'], size: number, chunks: Array<string | null>, name = ''): Layer {
  const l = { kind, name, size, chunkSize: CS, hash: '', chunks }
  l.hash = computeLayerHash(l)
  return l
}

function sample (): Manifest {
  return createManifest({
    name: 'web@1',
    createdAtMs: 1_763_790_000_000,
    layers: [
      layer('disk-base', 3 * CS + 17, [h('a'), null, null, h('b')], 'vda'),
      layer('disk-delta', CS, [h('c')]),
      layer('memory', 5 * CS, [null, h('a'), null, null, null], 'ram'),
      layer('device-state', 0, [])
    ]
  })
}

function expectRejected (bytes: Uint8Array, pattern?: RegExp): void {
  let err: unknown
  try { decodeManifest(bytes) } catch (e) { err = e }
  expect(err, 'decodeManifest accepted bad bytes').toBeInstanceOf(ManifestError)
  if (pattern !== undefined) expect((err as Error).message).toMatch(pattern)
}

/** Re-encode a mutated protobuf message (bypassing our canonical encoder). */
function mutate (m: Manifest, f: (msg: any) => void): Uint8Array {
  const msg = pb.Manifest.decode(encodeManifest(m))
  f(msg)
  return pb.Manifest.encode(msg).finish()
}

describe('manifest encoding', () => {
  it('round-trips, with a deterministic id that is the SHA-256 of the bytes', () => {
    const m = sample()
    const bytes = encodeManifest(m)
    expect(decodeManifest(bytes)).toEqual(m)
    expect(Buffer.from(encodeManifest(decodeManifest(bytes))).equals(Buffer.from(bytes))).toBe(true)
    expect(manifestId(m)).toBe(sha256(bytes))
    expect(manifestId(bytes)).toBe(manifestId(sample()))
    // zero chunks are run-length encoded: 2 + 3 zero chunks cost two small entries, not five
    const msg = pb.Manifest.decode(bytes)
    expect(msg.layers[0]?.chunks).toHaveLength(3)
    expect(msg.layers[2]?.chunks).toHaveLength(3)
  })

  it('changes id when anything changes', () => {
    const a = sample()
    const b = sample()
    b.name = 'web@2'
    expect(manifestId(a)).not.toBe(manifestId(b))
  })

  it('computes sizes and what a store lacks', () => {
    const m = sample()
    expect(manifestBytes(m)).toBe(3 * CS + 17 + CS + 5 * CS)
    // distinct non-zero chunks: a (1 MiB), b (17 bytes, last of its layer), c (1 MiB)
    expect(manifestStoredBytes(m)).toBe(2 * CS + 17)
    const have = new Set([h('a')])
    const store = { has: (x: string) => have.has(x) }
    expect(missingChunks(store, m)).toEqual([h('b'), h('c')])
    expect(missingBytes(store, m)).toBe(CS + 17)
    expect(isComplete(store, m)).toBe(false)
    have.add(h('b')); have.add(h('c'))
    expect(isComplete(store, m)).toBe(true)
  })
})

describe('manifest validation rejects', () => {
  it('random bytes', () => {
    for (let i = 0; i < 500; i++) expectRejected(randomBytes(1 + (i % 200)))
  })

  it('every truncation of a valid manifest', () => {
    const bytes = encodeManifest(sample())
    for (let n = 0; n < bytes.length; n++) expectRejected(bytes.subarray(0, n))
  })

  it('single-byte corruptions: rejected, or only a label (name, time, kind) differs, never the data', () => {
    const original = sample()
    const bytes = encodeManifest(original)
    const content = (m: Manifest): unknown => m.layers.map((l) => [l.size, l.hash, l.chunks])
    let rejected = 0
    for (let i = 0; i < bytes.length; i++) {
      for (const bit of [0x01, 0x40, 0x80]) {
        const b = Uint8Array.from(bytes)
        b[i] = (b[i] as number) ^ bit
        let m: Manifest | undefined
        try { m = decodeManifest(b) } catch (e) { expect(e).toBeInstanceOf(ManifestError); rejected++; continue }
        expect(content(m)).toEqual(content(original))
        expect(manifestId(b)).not.toBe(manifestId(bytes))
      }
    }
    expect(rejected).toBeGreaterThan(bytes.length * 2)
  })

  it('a huge zero run (2^40 chunks) without allocating it', () => {
    expectRejected(mutate(sample(), (msg) => { msg.layers[2].chunks[0].zeroChunks = 2 ** 40 }), /more chunks than its size/)
    expectRejected(mutate(sample(), (msg) => { msg.layers[2].size = 2 ** 50 }), /size/)
  })

  it('a chunk list that does not cover the size', () => {
    expectRejected(mutate(sample(), (msg) => { msg.layers[1].size = 2 * CS }), /lists 1 chunks, its size needs 2/)
  })

  it('wrong hash lengths', () => {
    expectRejected(mutate(sample(), (msg) => { msg.layers[0].chunks[0].hash = new Uint8Array(31) }), /31 bytes/)
    expectRejected(mutate(sample(), (msg) => { msg.layers[0].chunks[0].hash = new Uint8Array(33) }), /33 bytes/)
    expectRejected(mutate(sample(), (msg) => { msg.layers[0].hash = new Uint8Array(0) }), /hash has 0 bytes/)
  })

  it('a layer hash that does not match its chunks', () => {
    expectRejected(mutate(sample(), (msg) => { msg.layers[1].chunks[0].hash = Buffer.from(h('x'), 'hex') }), /does not match/)
  })

  it('too many layers, bad chunk sizes, unknown versions and kinds', () => {
    expectRejected(mutate(sample(), (msg) => { msg.layers = Array.from({ length: 65 }, () => msg.layers[1]) }), /layers/)
    expectRejected(mutate(sample(), (msg) => { msg.chunkSize = 3 << 20 }), /power of two/)
    expectRejected(mutate(sample(), (msg) => { msg.chunkSize = 1 << 30 }), /power of two/)
    expectRejected(mutate(sample(), (msg) => { msg.version = 2 }), /version 2/)
    expectRejected(mutate(sample(), (msg) => { msg.layers[0].kind = 9 }), /unknown kind/)
    expectRejected(mutate(sample(), (msg) => { msg.layers[0].chunks[0].zeroChunks = 1 }), /both a hash and a zero run/)
  })

  it('non-canonical encodings: unmerged zero runs and trailing unknown fields', () => {
    expectRejected(mutate(sample(), (msg) => {
      msg.layers[2].chunks.splice(2, 1, pb.ChunkRef.create({ zeroChunks: 1 }), pb.ChunkRef.create({ zeroChunks: 2 }))
    }), /canonical/)
    const bytes = encodeManifest(sample())
    expectRejected(Uint8Array.from([...bytes, 0x78, 0x01]), /canonical/) // field 15, varint 1
    expectRejected(mutate(sample(), (msg) => { msg.layerCount = 3 }), /says 3 layers but holds 4/)
  })

  it('oversized input before decoding it', () => {
    expectRejected(new Uint8Array((64 << 20) + 1), /at most/)
  })

  it('bad manifests built in memory', () => {
    const m = sample()
    m.layers[0]!.chunks[0] = 'ABCDEF'
    expect(() => validateManifest(m)).toThrow(ManifestError)
    expect(() => createManifest({ name: 'x', layers: [] })).toThrow(/at least one layer/)
  })
})
