import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore } from './chunk-store.js'
import { importLayer } from './layer-import.js'
import { ManifestAssembly } from './layer-assembly.js'
import { createManifest, type Manifest } from './manifest.js'

const CS = 64 * 1024
const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

/** Two layers: one with a repeated chunk, a zero chunk and a short tail; one small. */
async function fixture (): Promise<{ dir: string, store: ChunkStore, manifest: Manifest, files: Buffer[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'vmesh-assembly-'))
  dirs.push(dir)
  const store = await ChunkStore.open({ dir: join(dir, 'store') })
  const a = randomBytes(CS)
  const mem = Buffer.concat([a, Buffer.alloc(CS), randomBytes(CS), a, randomBytes(1000)])
  const spec = Buffer.from('{"small": true}')
  await writeFile(join(dir, 'mem'), mem)
  await writeFile(join(dir, 'spec'), spec)
  const layers = [
    await importLayer(store, join(dir, 'mem'), 'memory', { chunkSize: CS, name: 'pc.ram' }),
    await importLayer(store, join(dir, 'spec'), 'vm-spec', { chunkSize: CS, name: 'vm-spec' })
  ]
  return { dir, store, manifest: createManifest({ name: 't', layers }), files: [mem, spec] }
}

describe('ManifestAssembly', () => {
  it('builds every layer bit-identical from chunks put as they arrive plus the store for the rest', async () => {
    const { dir, store, manifest, files } = await fixture()
    const out = [join(dir, 'out-0'), join(dir, 'out-1')]
    const asm = new ManifestAssembly(store, manifest, out)
    await asm.open()
    // Only the first memory chunk "arrives" (it fills both of its places); the rest comes from the store.
    const first = manifest.layers[0]!.chunks[0]!
    asm.put(first, await store.readVerified(first))
    asm.put(first, Buffer.alloc(CS, 7)) // a second put of the same chunk is ignored
    await asm.finish()
    expect((await readFile(out[0]!)).equals(files[0]!)).toBe(true)
    expect((await readFile(out[1]!)).equals(files[1]!)).toBe(true)
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([])
  })

  it('copies the chunks the store holds before finish(), the layers other than memory first', async () => {
    const { dir, store, manifest, files } = await fixture()
    const out = [join(dir, 'h0'), join(dir, 'h1')]
    const asm = new ManifestAssembly(store, manifest, out)
    await asm.open()
    const order: string[] = []
    const read = store.readVerified.bind(store)
    store.readVerified = async (h) => { order.push(h); return await read(h) }
    asm.copyHeldChunks()
    const distinct = new Set(manifest.layers.flatMap((l) => l.chunks.filter((h) => h !== null)))
    expect(asm.chunksWritten).toBe(distinct.size)
    await asm.ready([1])
    expect(order[0]).toBe(manifest.layers[1]!.chunks[0])
    const before = order.length
    await asm.finish()
    expect(order.length).toBe(distinct.size)
    expect(before).toBeGreaterThanOrEqual(1)
    expect((await readFile(out[0]!)).equals(files[0]!)).toBe(true)
    expect((await readFile(out[1]!)).equals(files[1]!)).toBe(true)
  })

  it('places each file once when ready() and finish() overlap (the transfer ends while a clone starts)', async () => {
    for (let round = 0; round < 20; round++) {
      const { dir, store, manifest, files } = await fixture()
      const out = [join(dir, 'r0'), join(dir, 'r1')]
      const asm = new ManifestAssembly(store, manifest, out)
      await asm.open()
      asm.copyHeldChunks()
      await Promise.all(round % 2 === 0 ? [asm.ready([1], [0]), asm.finish()] : [asm.finish(), asm.ready([0, 1])])
      expect((await readFile(out[0]!)).equals(files[0]!)).toBe(true)
      expect((await readFile(out[1]!)).equals(files[1]!)).toBe(true)
    }
  })

  it('ignores bytes of the wrong length and chunks that are not in the manifest', async () => {
    const { dir, store, manifest, files } = await fixture()
    const out = [join(dir, 'o0'), join(dir, 'o1')]
    const asm = new ManifestAssembly(store, manifest, out)
    await asm.open()
    asm.put(manifest.layers[0]!.chunks[0]!, Buffer.alloc(10))
    asm.put('f'.repeat(64), Buffer.alloc(CS))
    expect(asm.chunksWritten).toBe(0)
    await asm.finish()
    expect((await readFile(out[0]!)).equals(files[0]!)).toBe(true)
  })

  it('fails when a chunk is in neither the puts nor the store, and leaves no file behind', async () => {
    const { dir, store, manifest } = await fixture()
    const missing = manifest.layers[0]!.chunks[2]!
    expect(await store.delete(missing)).toBe(true)
    const out = [join(dir, 'x0'), join(dir, 'x1')]
    const asm = new ManifestAssembly(store, manifest, out)
    await asm.open()
    await expect(asm.finish()).rejects.toThrow()
    expect((await readdir(dir)).filter((n) => n.startsWith('x') || n.includes('.tmp'))).toEqual([])
  })

  it('ready() puts the layers asked for in place before the rest arrives, and finish() completes the others', async () => {
    const { dir, store, manifest, files } = await fixture()
    const empty = await ChunkStore.open({ dir: join(dir, 'empty') })
    const out = [join(dir, 'r0'), join(dir, 'r1')]
    const asm = new ManifestAssembly(empty, manifest, out)
    await asm.open()
    let ready = false
    const readying = asm.ready([1], [0]).then(() => { ready = true })
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(ready).toBe(false) // the spec chunk has not arrived, and the store does not hold it
    const spec = manifest.layers[1]!.chunks[0]!
    asm.put(spec, await store.readVerified(spec))
    await readying
    expect((await readFile(out[1]!)).equals(files[1]!)).toBe(true)
    expect((await stat(out[0]!)).size).toBe(files[0]!.length) // in place at full size, still being written
    for (const h of manifest.layers[0]!.chunks) if (h !== null) asm.put(h, await store.readVerified(h))
    await asm.finish()
    expect((await readFile(out[0]!)).equals(files[0]!)).toBe(true)
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([])
  })

  it('ready() copies in what the store already holds, and rejects once the assembly is aborted', async () => {
    const { dir, store, manifest, files } = await fixture()
    const asm = new ManifestAssembly(store, manifest, [join(dir, 'q0'), join(dir, 'q1')])
    await asm.open()
    await asm.ready([1])
    expect((await readFile(join(dir, 'q1'))).equals(files[1]!)).toBe(true)
    const empty = await ChunkStore.open({ dir: join(dir, 'empty') })
    const waiting = new ManifestAssembly(empty, manifest, [join(dir, 'w0'), join(dir, 'w1')])
    await waiting.open()
    const readying = waiting.ready([0], [1])
    await waiting.abort()
    await expect(readying).rejects.toThrow(/aborted/)
    expect((await readdir(dir)).filter((n) => n.startsWith('w'))).toEqual([])
    await asm.abort()
    expect((await readdir(dir)).filter((n) => n.startsWith('q'))).toEqual([])
  })

  it('abort removes the temp files', async () => {
    const { dir, store, manifest } = await fixture()
    const asm = new ManifestAssembly(store, manifest, [join(dir, 'a0'), join(dir, 'a1')])
    await asm.open()
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toHaveLength(2)
    await asm.abort()
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([])
  })
})
