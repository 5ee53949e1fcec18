import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore } from './chunk-store.js'
import { importLayer } from './layer-import.js'
import { materializeLayer } from './layer-export.js'
import { computeLayerHash, createManifest, decodeManifest, encodeManifest } from './manifest.js'
import { QuotaExceededError } from './quota.js'
import { CorruptChunkError } from './errors.js'

const KiB = 1024
const CS = 64 * KiB // the smallest allowed chunk size keeps the files in these tests small

const dirs: string[] = []
async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vmesh-layer-'))
  dirs.push(d)
  return d
}
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

/** A sparse file: `size` bytes, with data written only at the given [offset, length] regions. */
async function sparseFile (path: string, size: number, regions: Array<[number, number]>): Promise<Buffer> {
  const expected = Buffer.alloc(size)
  const fd = await open(path, 'w')
  await fd.truncate(size)
  for (const [off, len] of regions) {
    const data = randomBytes(len)
    data.copy(expected, off)
    await fd.write(data, 0, len, off)
  }
  await fd.close()
  return expected
}

describe('importLayer / materializeLayer', () => {
  it('round-trips a file whose size is not a chunk multiple, bit-identical', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir: join(dir, 'store') })
    const src = join(dir, 'src.bin')
    const data = randomBytes(5 * CS + 12345)
    await writeFile(src, data)
    const layer = await importLayer(store, src, 'disk-base', { chunkSize: CS, name: 'vda' })
    expect(layer).toMatchObject({ kind: 'disk-base', name: 'vda', size: data.length, chunkSize: CS })
    expect(layer.chunks).toHaveLength(6)
    expect(layer.chunks.every((c) => c !== null)).toBe(true)
    expect(layer.hash).toBe(computeLayerHash(layer))
    expect(store.stats()).toMatchObject({ chunks: 6, bytes: data.length })
    const out = join(dir, 'out.bin')
    await materializeLayer(store, layer, out)
    expect((await readFile(out)).equals(data)).toBe(true)
  })

  it('sparse file: zero chunks are not stored, and come back as holes', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir: join(dir, 'store') })
    const src = join(dir, 'sparse.img')
    const size = 64 * CS + 999 // ends in a partial chunk inside a hole
    const expected = await sparseFile(src, size, [[0, 100], [10 * CS + 5, CS], [40 * CS, 3 * CS]])
    // an explicitly written zero chunk (not a hole) is a zero chunk too
    const fd = await open(src, 'r+'); await fd.write(Buffer.alloc(CS), 0, CS, 50 * CS); await fd.close()
    const layer = await importLayer(store, src, 'memory', { chunkSize: CS })
    const stored = layer.chunks.filter((c) => c !== null)
    // chunk 0; chunks 10 and 11 (the region straddles them); chunks 40..42
    expect(layer.chunks.map((c, i) => (c === null ? -1 : i)).filter((i) => i >= 0)).toEqual([0, 10, 11, 40, 41, 42])
    expect(store.stats().chunks).toBe(stored.length)
    expect(store.stats().bytes).toBe(6 * CS)
    const out = join(dir, 'out.img')
    await writeFile(out, randomBytes(3 * CS)) // an existing file is replaced, not patched
    await materializeLayer(store, layer, out)
    const back = await readFile(out)
    expect(back.length).toBe(size)
    expect(back.equals(expected)).toBe(true)
    // holes: far fewer blocks allocated than the file's size
    const st = await stat(out)
    expect(st.blocks * 512).toBeLessThan(12 * CS)
    // the manifest carries it with zero runs and decodes to the same layer
    const m = createManifest({ name: 'sparse', layers: [layer] })
    expect(decodeManifest(encodeManifest(m)).layers[0]).toEqual(layer)
  })

  it('an empty file and an all-zero file store nothing', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir: join(dir, 'store') })
    await writeFile(join(dir, 'empty'), '')
    await sparseFile(join(dir, 'zeros'), 7 * CS + 1, [])
    const empty = await importLayer(store, join(dir, 'empty'), 'device-state', { chunkSize: CS })
    const zeros = await importLayer(store, join(dir, 'zeros'), 'memory', { chunkSize: CS })
    expect(empty.chunks).toEqual([])
    expect(zeros.chunks).toEqual(Array(8).fill(null))
    expect(store.stats().chunks).toBe(0)
    await materializeLayer(store, zeros, join(dir, 'zeros.out'))
    expect((await readFile(join(dir, 'zeros.out'))).equals(Buffer.alloc(7 * CS + 1))).toBe(true)
    await materializeLayer(store, empty, join(dir, 'empty.out'))
    expect((await stat(join(dir, 'empty.out'))).size).toBe(0)
  })

  it('deduplicates: importing a second file with shared chunks stores only the new ones', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir: join(dir, 'store') })
    const base = randomBytes(8 * CS)
    await writeFile(join(dir, 'a'), base)
    const delta = Buffer.from(base)
    randomBytes(100).copy(delta, 3 * CS + 7)
    await writeFile(join(dir, 'b'), delta)
    await importLayer(store, join(dir, 'a'), 'disk-base', { chunkSize: CS })
    let reused = 0
    await importLayer(store, join(dir, 'b'), 'disk-delta', { chunkSize: CS, onProgress: (p) => { reused = p.reusedChunks } })
    expect(reused).toBe(7)
    expect(store.stats().chunks).toBe(9)
  })

  it('fails an import past the quota, saying how much the whole import needs', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir: join(dir, 'store'), quotaBytes: 4 * CS, writeBatch: 2 })
    await writeFile(join(dir, 'big'), randomBytes(10 * CS))
    const err = await importLayer(store, join(dir, 'big'), 'disk-base', { chunkSize: CS }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QuotaExceededError)
    expect((err as QuotaExceededError).neededBytes).toBe(10 * CS)
    expect((err as QuotaExceededError).freeBytes).toBe(4 * CS)
    expect((err as Error).message).toMatch(/importing .*big as a layer needs 640\.0 KiB more, but only 256\.0 KiB of the 256\.0 KiB quota is free/)
    // what was written before the failure is accounted for, within the quota
    expect(store.stats().bytes).toBeLessThanOrEqual(4 * CS)
    expect(store.stats().bytes + store.stats().freeBytes).toBe(4 * CS)
    expect((await ChunkStore.open({ dir: join(dir, 'store') })).stats().bytes).toBe(store.stats().bytes)
  })

  it('export stops at a corrupt chunk and leaves the target untouched', async () => {
    const dir = await tempDir()
    const store = await ChunkStore.open({ dir: join(dir, 'store') })
    await writeFile(join(dir, 'src'), randomBytes(4 * CS))
    const layer = await importLayer(store, join(dir, 'src'), 'disk-base', { chunkSize: CS })
    const h = layer.chunks[2] as string
    const p = store.pathOf(h)
    const bytes = await readFile(p); bytes[0] = (bytes[0] as number) ^ 0xff
    await rm(p); await writeFile(p, bytes)
    await writeFile(join(dir, 'out'), 'previous')
    await expect(materializeLayer(store, layer, join(dir, 'out'))).rejects.toBeInstanceOf(CorruptChunkError)
    expect(await readFile(join(dir, 'out'), 'utf8')).toBe('previous')
    expect(store.has(h)).toBe(false)
  })
})
