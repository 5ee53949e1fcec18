import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, readFile, rm, writeFile, readdir, mkdir } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore } from './chunk-store.js'
import { sha256 } from './hash.js'
import { ChunkNotFoundError, CorruptChunkError } from './errors.js'
import { QuotaExceededError, quotaAllows, quotaFree } from './quota.js'

const dirs: string[] = []
async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vmesh-store-'))
  dirs.push(d)
  return d
}
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

describe('ChunkStore', () => {
  it('stores a chunk under chunks/ab/cdef… and reads it back verified', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir })
    const bytes = randomBytes(100_000)
    const h = sha256(bytes)
    expect(store.has(h)).toBe(false)
    expect(await store.put(h, bytes)).toBe(true)
    expect(await store.put(h, bytes)).toBe(false)
    expect(store.has(h)).toBe(true)
    expect(Buffer.from(await readFile(join(dir, 'chunks', h.slice(0, 2), h.slice(2)))).equals(bytes)).toBe(true)
    expect(Buffer.from(await store.readVerified(h)).equals(bytes)).toBe(true)
    expect(store.stats()).toMatchObject({ chunks: 1, bytes: 100_000, corruptDiscarded: 0 })
    // the index is rebuilt from disk on open
    const again = await ChunkStore.open({ dir })
    expect(again.has(h)).toBe(true)
    expect(again.stats().bytes).toBe(100_000)
  })

  it('put refuses bytes that do not match their hash and stores nothing', async () => {
    const store = await ChunkStore.open({ dir: await tempDir() })
    const bytes = randomBytes(4096)
    const wrong = sha256(randomBytes(4096))
    await expect(store.put(wrong, bytes)).rejects.toBeInstanceOf(CorruptChunkError)
    expect(store.has(wrong)).toBe(false)
    expect(store.stats().chunks).toBe(0)
    await expect(store.put('ABC', bytes)).rejects.toThrow(/64 lowercase hex/)
  })

  it('detects a corrupt stored chunk, deletes and reports it, never returns its bytes', async () => {
    const dir = await tempDir()
    const seen: CorruptChunkError[] = []
    const store = await ChunkStore.open({ dir, onCorrupt: (e) => seen.push(e) })
    const bytes = randomBytes(65536)
    const h = sha256(bytes)
    await store.put(h, bytes)
    const path = join(dir, 'chunks', h.slice(0, 2), h.slice(2))
    const onDisk = await readFile(path)
    onDisk[12345] = (onDisk[12345] as number) ^ 0x01 // one bit of one byte
    await rm(path, { force: true })
    await writeFile(path, onDisk)
    const err = await store.readVerified(h).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CorruptChunkError)
    expect((err as CorruptChunkError).hash).toBe(h)
    expect(seen).toHaveLength(1)
    expect(store.has(h)).toBe(false)
    expect(await readdir(join(dir, 'chunks', h.slice(0, 2)))).toEqual([])
    expect(store.stats()).toMatchObject({ chunks: 0, bytes: 0, corruptDiscarded: 1 })
    // and it can be fetched again
    await store.put(h, bytes)
    expect(Buffer.from(await store.readVerified(h)).equals(bytes)).toBe(true)
  })

  it('reading a missing chunk says so', async () => {
    const store = await ChunkStore.open({ dir: await tempDir() })
    await expect(store.readVerified(sha256(Buffer.from('nope')))).rejects.toBeInstanceOf(ChunkNotFoundError)
  })

  it('open removes temp files left by a crash and ignores them in the index', async () => {
    const dir = await tempDir()
    await mkdir(join(dir, 'chunks', 'tmp'), { recursive: true })
    await writeFile(join(dir, 'chunks', 'tmp', `${sha256(Buffer.from('x'))}.abcd`), 'partial')
    const store = await ChunkStore.open({ dir })
    expect(await readdir(join(dir, 'chunks', 'tmp'))).toEqual([])
    expect(store.stats().chunks).toBe(0)
  })

  it('batched writer makes every chunk durable and visible after flush', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), writeBatch: 3 })
    const w = store.writer()
    const chunks = Array.from({ length: 10 }, () => randomBytes(8192))
    for (const c of chunks) await w.add(sha256(c), c)
    expect(await w.add(sha256(chunks[0] as Buffer), chunks[0] as Buffer)).toBe(false) // queued or stored already
    await w.flush()
    for (const c of chunks) expect(store.has(sha256(c))).toBe(true)
    expect(store.stats().chunks).toBe(10)
  })

  it('refuses a put past the quota with how much is needed and free', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), quotaBytes: 3 << 20 })
    const a = randomBytes(2 << 20)
    await store.put(sha256(a), a)
    const b = randomBytes(1.5 * (1 << 20))
    const err = await store.put(sha256(b), b).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QuotaExceededError)
    const q = err as QuotaExceededError
    expect(q.neededBytes).toBe(1.5 * (1 << 20))
    expect(q.freeBytes).toBe(1 << 20)
    expect(q.message).toMatch(/needs 1\.5 MiB more, but only 1\.0 MiB of the 3\.0 MiB quota is free/)
    expect(store.has(sha256(b))).toBe(false)
    expect(store.stats()).toMatchObject({ chunks: 1, freeBytes: 1 << 20 })
  })
})

describe('quota arithmetic', () => {
  it('counts stored and reserved bytes, and never goes negative', () => {
    expect(quotaFree(100, 30, 20)).toBe(50)
    expect(quotaFree(100, 90, 20)).toBe(0)
    expect(quotaAllows(100, 30, 20, 50)).toBe(true)
    expect(quotaAllows(100, 30, 20, 51)).toBe(false)
    expect(quotaAllows(Number.POSITIVE_INFINITY, 1e15, 1e15, 1e15)).toBe(true)
  })
})
