import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore } from './chunk-store.js'
import { importLayer } from './layer-import.js'
import { LayerBuilder } from './layer-builder.js'

const CS = 64 * 1024
const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

describe('LayerBuilder', () => {
  it('gives the same layer as importLayer for chunks handed over out of order, and stores the same chunks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmesh-builder-'))
    dirs.push(dir)
    const data = Buffer.concat([randomBytes(CS), Buffer.alloc(CS), randomBytes(CS), randomBytes(1000)])
    await writeFile(join(dir, 'f'), data)
    const a = await ChunkStore.open({ dir: join(dir, 'a') })
    const expected = await importLayer(a, join(dir, 'f'), 'memory', { chunkSize: CS, name: 'pc.ram' })
    const b = await ChunkStore.open({ dir: join(dir, 'b') })
    const hold = b.hold()
    const builder = new LayerBuilder(b, 'memory', 'pc.ram', data.length, hold, CS)
    for (const i of [3, 1, 0, 2]) await builder.put(i, i === 1 ? null : data.subarray(i * CS, Math.min(data.length, (i + 1) * CS)))
    expect(await builder.finish()).toEqual(expected)
    expect(b.stats()).toMatchObject({ chunks: 3, bytes: a.stats().bytes })
    hold.release()
  })

  it('refuses a chunk twice, a chunk of the wrong length, and finishing with chunks missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmesh-builder-'))
    dirs.push(dir)
    const store = await ChunkStore.open({ dir })
    const builder = new LayerBuilder(store, 'memory', 'm', 2 * CS, store.hold(), CS)
    await builder.put(0, randomBytes(CS))
    await expect(builder.put(0, null)).rejects.toThrow(/given twice/)
    await expect(builder.put(1, randomBytes(10))).rejects.toThrow(/expected 65536/)
    await expect(builder.put(2, null)).rejects.toThrow(/outside layer/)
    await expect(builder.finish()).rejects.toThrow(/1 of 2 chunks never given/)
    await builder.abort()
  })
})
