import { describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { PartialChunk, PartialChunks, PieceHashCache } from './partial-chunks.js'

const PIECE = 4
const digest = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

function chunkOf (bytes: Buffer, onBad?: (err: Error) => void): { partial: PartialChunk, checked: number[] } {
  const hashes: Buffer[] = []
  for (let at = 0; at < bytes.length; at += PIECE) hashes.push(digest(bytes.subarray(at, at + PIECE)))
  const checked: number[] = []
  const partial = new PartialChunk(bytes.length, PIECE, (k, b) => { checked.push(k); return digest(b).equals(hashes[k] as Buffer) }, hashes, 'digest', onBad)
  return { partial, checked }
}

describe('a chunk passed on while it arrives', () => {
  it('serves bytes a whole checked piece at a time, the short last piece too', async () => {
    const bytes = randomBytes(10)
    const { partial } = chunkOf(bytes)
    partial.append(bytes.subarray(0, 3))
    let woke = false
    const waiting = partial.beyond(0).then(() => { woke = true })
    await Promise.resolve()
    expect(woke).toBe(false)
    expect(partial.servable).toBe(0)
    partial.append(bytes.subarray(3, 9))
    await waiting
    expect(partial.servable).toBe(8)
    partial.append(bytes.subarray(9))
    await partial.beyond(8)
    expect(partial.servable).toBe(10)
    expect(partial.data.equals(bytes)).toBe(true)
    await expect(partial.beyond(10)).resolves.toBeUndefined()
  })

  it('checks pieces only when a reader wants them, each once', async () => {
    const bytes = randomBytes(12)
    const { partial, checked } = chunkOf(bytes)
    partial.append(bytes)
    expect(checked).toEqual([])
    await partial.beyond(0)
    await partial.beyond(4)
    expect(partial.servable).toBe(12)
    expect(checked).toEqual([0, 1, 2])
  })

  it('a piece that does not match fails its readers, serves nothing past it, and is reported once', async () => {
    const bytes = randomBytes(12)
    const bad: Error[] = []
    const { partial } = chunkOf(bytes, (err) => bad.push(err))
    const flipped = Buffer.from(bytes)
    flipped[5] = (flipped[5] as number) ^ 1
    partial.append(flipped.subarray(0, 4))
    await partial.beyond(0)
    const reader = partial.beyond(4)
    partial.append(flipped.subarray(4, 8))
    await expect(reader).rejects.toThrow(/piece 1 of the chunk does not match/)
    expect(partial.servable).toBe(4)
    partial.append(flipped.subarray(8))
    await expect(partial.beyond(4)).rejects.toThrow(/does not match/)
    expect(partial.servable).toBe(4)
    expect(bad).toHaveLength(1)
    expect(partial.data.equals(flipped)).toBe(true)
    expect(() => partial.append(Buffer.alloc(1))).toThrow(/overflow/)
  })

  it('a reception that broke off fails its readers', async () => {
    const { partial } = chunkOf(randomBytes(8))
    const reader = partial.beyond(0)
    partial.fail(new Error('link dropped'))
    await expect(reader).rejects.toThrow(/link dropped/)
  })

  it('the registry serves one reception of a chunk, and none that failed', () => {
    const reg = new PartialChunks()
    const a = chunkOf(randomBytes(8)).partial
    const b = chunkOf(randomBytes(8)).partial
    expect(reg.begin('h', a)).toBe(true)
    expect(reg.begin('h', b)).toBe(false)
    expect(reg.get('h')).toBe(a)
    reg.end('h', b)
    expect(reg.get('h')).toBe(a)
    a.fail(new Error('x'))
    expect(reg.has('h')).toBe(false)
    expect(reg.begin('h', b)).toBe(true)
    reg.end('h', b)
    expect(reg.size).toBe(0)
  })

  it('keeps the piece hashes of the latest chunks, within its bound, for the digest they hash to', () => {
    const cache = new PieceHashCache(2)
    const h = [randomBytes(32)]
    cache.add('a', 'd', h)
    cache.add('b', 'd', h)
    cache.add('a', 'd', h)
    cache.add('c', 'd', h)
    cache.add('e', 'd', [])
    expect([cache.get('a', 'd'), cache.get('b', 'd'), cache.get('c', 'd'), cache.get('e', 'd')].map((x) => x !== undefined)).toEqual([true, false, true, false])
    expect(cache.get('a', 'another digest')).toBeUndefined()
  })
})
