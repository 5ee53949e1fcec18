import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore, ManifestStore, computeLayerHash, createManifest, sha256 } from '@vmesh/store'
import { Counters } from '@vmesh/mesh'
import { ChunkCollector } from './chunk-gc.js'
import { Logger } from './logger.js'

const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

async function chunk (store: ChunkStore, size: number): Promise<string> {
  const bytes = randomBytes(size)
  const h = sha256(bytes)
  await store.put(h, bytes)
  return h
}

describe('the agent\'s chunk collector', () => {
  it('deletes chunks no manifest references, keeps held ones, counts what it did, one pass at a time', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmesh-agent-gc-'))
    dirs.push(dir)
    const store = await ChunkStore.open({ dir })
    const manifests = await ManifestStore.open({ dir })
    const counters = new Counters()
    const collector = new ChunkCollector(store, manifests, new Logger('error'), counters, 60_000)
    const kept = await chunk(store, 100)
    const layer = { size: 100, chunkSize: 1 << 20, chunks: [kept] }
    await manifests.save(createManifest({ name: 'img', layers: [{ kind: 'disk-base', name: 'raw', ...layer, hash: computeLayerHash(layer) }] }))
    const stray = await chunk(store, 300)
    // A transfer in progress: its manifest is not saved yet, its chunks are held.
    const hold = store.hold()
    const held = await chunk(store, 200)
    hold.add(held)
    const [a, b] = await Promise.all([collector.run('test'), collector.run('test')])
    expect(a.deletedBytes + b.deletedBytes).toBe(300)
    expect(store.has(kept) && store.has(held) && !store.has(stray)).toBe(true)
    expect(counters.get('gc.runs')).toBe(2)
    expect(counters.get('gc.deleted_bytes')).toBe(300)
    hold.release()
    expect((await collector.run('test')).deletedBytes).toBe(200)
    collector.start()
    collector.stop()
  })
})
