import { describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { PartialChunk, PartialChunks } from './partial-chunks.js'

const PIECE = 4
const digest = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

function chunkOf (bytes: Buffer): { partial: PartialChunk, hashes: Buffer[] } {
  const hashes: Buffer[] = []
  for (let at = 0; at < bytes.length; at += PIECE) hashes.push(digest(bytes.subarray(at, at + PIECE)))
  return { partial: new PartialChunk(bytes.length, PIECE, (k, b) => digest(b).equals(hashes[k] as Buffer)), hashes }
}

describe('a chunk passed on while it arrives', () => {
  it('makes bytes servable a whole checked piece at a time, the short last piece too', async () => {
    const bytes = randomBytes(10)
    const { partial } = chunkOf(bytes)
    expect(partial.append(bytes.subarray(0, 3))).toBe(true)
    expect(partial.servable).toBe(0)
    let woke = false
    const waiting = partial.beyond(0).then(() => { woke = true })
    await Promise.resolve()
    expect(woke).toBe(false)
    expect(partial.append(bytes.subarray(3, 9))).toBe(true)
    await waiting
    expect(partial.servable).toBe(8)
    expect(partial.filled).toBe(false)
    expect(partial.append(bytes.subarray(9))).toBe(true)
    expect(partial.servable).toBe(10)
    expect(partial.filled).toBe(true)
    expect(partial.data.equals(bytes)).toBe(true)
    await expect(partial.beyond(8)).resolves.toBeUndefined()
  })

  it('a piece that does not match fails its readers, serves nothing past it, and still gathers the bytes', async () => {
    const bytes = randomBytes(12)
    const { partial } = chunkOf(bytes)
    const bad = Buffer.from(bytes)
    bad[5] = (bad[5] as number) ^ 1
    expect(partial.append(bad.subarray(0, 4))).toBe(true)
    const reader = partial.beyond(4)
    expect(partial.append(bad.subarray(4, 8))).toBe(false)
    await expect(reader).rejects.toThrow(/piece 1 of the chunk does not match/)
    expect(partial.servable).toBe(4)
    expect(partial.append(bad.subarray(8))).toBe(true)
    expect(partial.servable).toBe(4)
    expect(partial.filled).toBe(true)
    await expect(partial.beyond(4)).rejects.toThrow(/does not match/)
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
})
