import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore } from './chunk-store.js'
import { ManifestStore } from './manifest-store.js'
import { ImageCatalogue } from './image-catalogue.js'
import { importLayer } from './layer-import.js'
import { createManifest, encodeManifest } from './manifest.js'
import { gc } from './gc.js'
import { sha256 } from './hash.js'
import { missingChunks } from './manifest-stats.js'
import { ManifestError, ManifestNotFoundError } from './errors.js'

const CS = 64 * 1024
const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

async function setup (): Promise<{ dir: string, store: ChunkStore, manifests: ManifestStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'vmesh-gc-'))
  dirs.push(dir)
  return { dir, store: await ChunkStore.open({ dir }), manifests: await ManifestStore.open({ dir }) }
}

async function importFile (dir: string, store: ChunkStore, name: string, data: Buffer, hold?: ReturnType<ChunkStore['hold']>) {
  await writeFile(join(dir, name), data)
  return await importLayer(store, join(dir, name), 'disk-base', { chunkSize: CS, ...(hold ? { hold } : {}) })
}

describe('gc', () => {
  it('keeps chunks referenced by saved manifests and removes the rest', async () => {
    const { dir, store, manifests } = await setup()
    const shared = randomBytes(2 * CS)
    const a = await importFile(dir, store, 'a', Buffer.concat([shared, randomBytes(CS)]))
    const b = await importFile(dir, store, 'b', Buffer.concat([shared, randomBytes(2 * CS)]))
    const idA = await manifests.save(createManifest({ name: 'a', layers: [a] }))
    const idB = await manifests.save(createManifest({ name: 'b', layers: [b] }))
    const stray = randomBytes(1000)
    await store.put(sha256(stray), stray)
    expect(store.stats().chunks).toBe(2 + 1 + 2 + 1)

    let r = await gc(store, manifests)
    expect(r).toMatchObject({ manifests: 2, deletedChunks: 1, deletedBytes: 1000 })
    expect(store.has(sha256(stray))).toBe(false)
    expect(store.stats().chunks).toBe(5)

    expect(await manifests.delete(idB)).toBe(true)
    r = await gc(store, manifests)
    expect(r.deletedChunks).toBe(2) // b's own chunks; the shared ones stay for a
    for (const h of a.chunks) expect(store.has(h as string)).toBe(true)
    expect(missingChunks(store, await manifests.load(idA))).toEqual([])
    // and the deletions are on disk: a reopened store agrees
    expect((await ChunkStore.open({ dir })).stats().chunks).toBe(3)
  })

  it('keeps the chunks of an import whose manifest is not saved yet (hold)', async () => {
    const { dir, store, manifests } = await setup()
    const hold = store.hold()
    const layer = await importFile(dir, store, 'x', randomBytes(3 * CS), hold)
    expect((await gc(store, manifests)).deletedChunks).toBe(0)
    await manifests.save(createManifest({ name: 'x', layers: [layer] }))
    hold.release()
    expect((await gc(store, manifests)).deletedChunks).toBe(0)
    expect(store.stats().chunks).toBe(3)
  })

  it('keeps chunks whose hold is released, or that are written, while a pass runs', async () => {
    const { dir, store, manifests } = await setup()
    const hold = store.hold()
    const layer = await importFile(dir, store, 'x', randomBytes(3 * CS), hold)
    const late = randomBytes(5000)
    const pass = gc(store, manifests) // begins synchronously, then reads the manifest list
    const saved = manifests.save(createManifest({ name: 'x', layers: [layer] }))
    hold.release() // deferred: this pass may not have seen the manifest
    await store.put(sha256(late), late)
    expect((await pass).deletedChunks).toBe(0)
    await saved
    expect(store.stats().chunks).toBe(4)
    // the next pass sees the saved manifest; the late chunk, unreferenced and unheld, goes
    expect((await gc(store, manifests)).deletedChunks).toBe(1)
    expect(store.has(sha256(late))).toBe(false)
    for (const h of layer.chunks) expect(store.has(h as string)).toBe(true)
  })

  it('deletes nothing when a manifest cannot be read', async () => {
    const { dir, store, manifests } = await setup()
    await importFile(dir, store, 'x', randomBytes(2 * CS))
    await writeFile(join(manifests.manifestsDir, sha256(Buffer.from('junk'))), 'junk')
    await expect(gc(store, manifests)).rejects.toThrow(/gc stopped without deleting anything/)
    expect(store.stats().chunks).toBe(2)
  })
})

describe('ManifestStore and ImageCatalogue', () => {
  it('saves durably by id, verifies on load, lists and deletes', async () => {
    const { dir, store, manifests } = await setup()
    const layer = await importFile(dir, store, 'img', randomBytes(CS + 5))
    const m = createManifest({ name: 'img', layers: [layer], createdAtMs: 1 })
    const id = await manifests.save(m)
    expect(id).toBe(sha256(encodeManifest(m)))
    expect(await manifests.list()).toEqual([id])
    expect([await manifests.has(id), await manifests.has(sha256(Buffer.from('other'))), await manifests.has('../x')]).toEqual([true, false, false])
    expect(await manifests.load(id)).toEqual(m)
    await expect(manifests.saveEncoded(encodeManifest(m), sha256(Buffer.from('other')))).rejects.toBeInstanceOf(ManifestError)
    // a manifest file altered on disk is refused
    await writeFile(join(manifests.manifestsDir, id), Buffer.from(encodeManifest({ ...m, name: 'evil' })))
    await expect(manifests.load(id)).rejects.toThrow(/corrupt/)
    expect(await manifests.delete(id)).toBe(true)
    expect(await manifests.has(id)).toBe(false)
    await expect(manifests.load(id)).rejects.toBeInstanceOf(ManifestNotFoundError)
  })

  it('names images, resolves names and id prefixes, survives reopen', async () => {
    const { dir } = await setup()
    const cat = await ImageCatalogue.open({ dir })
    const id1 = sha256(Buffer.from('1'))
    const id2 = sha256(Buffer.from('2'))
    await cat.add('debian-12', id1)
    await cat.add('alpine', id2)
    await cat.add('debian-12', id2) // renaming points the name elsewhere
    const again = await ImageCatalogue.open({ dir })
    expect(again.list().map((e) => [e.name, e.id])).toEqual([['alpine', id2], ['debian-12', id2]])
    expect(again.resolve('alpine')).toBe(id2)
    expect(again.resolve(id2.slice(0, 10))).toBe(id2)
    expect(again.resolve(id1)).toBe(id1)
    expect(again.resolve('nope')).toBeUndefined()
    await expect(again.add('../etc', id1)).rejects.toThrow(/not allowed/)
    expect(await again.remove('alpine')).toBe(true)
    expect(again.list()).toHaveLength(1)
  })
})
