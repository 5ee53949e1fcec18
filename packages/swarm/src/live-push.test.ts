// A live push between four swarm services in one process (real libp2p nodes and bulk channels on
// loopback): the source names chunks while it "takes" the snapshot, seals it with the manifest,
// and every target ends up holding the manifest completely, the source having sent it about once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p } from 'libp2p'
import { generateKey } from '@libp2p/pnet'
import { createClientNode } from '@vmesh/mesh'
import { ChunkStore, createManifest, encodeManifest, importLayer, isComplete, LayerBuilder, ManifestStore, materializeLayer, storeConfig, type Manifest } from '@vmesh/store'
import { SwarmService } from './swarm-service.js'
import { announceChunks } from './swarm-context.js'

const CS = storeConfig.DEFAULT_CHUNK_SIZE
const quiet = { debug: () => {}, info: () => {}, warn: () => {} }

interface Host { node: Libp2p, store: ChunkStore, manifests: ManifestStore, swarm: SwarmService, completed: string[] }

/** Four swarm services on loopback; the source (host 0) has dialled the others. */
async function startHosts (dir: string, sourceUploadBytesPerS = 0): Promise<Host[]> {
  const psk = new Uint8Array(95)
  generateKey(psk)
  const hosts = await Promise.all(Array.from({ length: 4 }, async (_, i) => {
    const node = await createClientNode(psk, ['/ip4/127.0.0.1/tcp/0'])
    const store = await ChunkStore.open({ dir: join(dir, `h${i}`) })
    const manifests = await ManifestStore.open({ dir: join(dir, `h${i}`) })
    const completed: string[] = []
    const rateLimits = i === 0 ? { uploadBytesPerS: sourceUploadBytesPerS } : {}
    const swarm = new SwarmService({ node, store, manifests, log: quiet, counters: { inc: () => {} }, rateLimits, onComplete: (id) => { completed.push(id) } })
    await swarm.start()
    return { node, store, manifests, swarm, completed }
  }))
  // The source dials every target, so its peer store has their addresses for the start frame.
  for (const h of hosts.slice(1)) await hosts[0]!.node.dial(h.node.getMultiaddrs())
  return hosts
}

async function stopHosts (hosts: Host[]): Promise<void> {
  for (const h of hosts) { await h.swarm.stop(); await h.node.stop() }
}

describe('live push (the snapshot is sent while it is taken)', () => {
  let dir: string
  let hosts: Host[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmesh-live-'))
    hosts = await startHosts(dir)
  })

  afterAll(async () => {
    await stopHosts(hosts)
    await rm(dir, { recursive: true, force: true })
  })

  it('targets fetch the chunks as they are named and hold the sealed manifest completely; the source sends it about once', async () => {
    const [src, ...targets] = hosts as [Host, ...Host[]]
    // "Memory": 12 chunks, one of them zero and one a repeat; a small "disk" layer from a file.
    const memory = randomBytes(12 * CS)
    memory.fill(0, 3 * CS, 4 * CS)
    memory.set(memory.subarray(0, CS), 7 * CS)
    const diskPath = join(dir, 'disk')
    await writeFile(diskPath, randomBytes(CS + 4321))

    const live = src.swarm.pushLive(targets.map((t) => ({ peerId: t.node.peerId })), 64)
    const hold = src.store.hold()
    const builder = new LayerBuilder(src.store, 'memory', 'pc.ram', memory.length, hold)
    for (let i = 0; i < 12; i++) {
      const data = memory.subarray(i * CS, (i + 1) * CS)
      const hash = await builder.put(i, data)
      if (hash !== null) live.announce([{ hash, size: data.length, data }])
      await new Promise((resolve) => setTimeout(resolve, 20)) // the snapshot takes a while
    }
    const mem = await builder.finish()
    const disk = await importLayer(src.store, diskPath, 'disk-base', { hold })
    live.announce(disk.chunks.flatMap((h, i) => (h === null ? [] : [{ hash: h, size: Math.min(CS, disk.size - i * CS) }])), { first: true })
    const manifest = createManifest({ name: 'live', layers: [disk, mem] })
    const id = await src.manifests.save(manifest)
    hold.release()
    // A manifest that is not made of the chunks named is refused before any target sees it.
    const other = createManifest({ name: 'other', layers: [disk] })
    expect(() => { live.seal(id, encodeManifest(other)) }).toThrow(/announced/)
    live.seal(id, await src.manifests.loadEncoded(id))

    const result = await live.result
    expect(result.id).toBe(id)
    expect(result.hosts.map((h) => h.state)).toEqual(['done', 'done', 'done'])
    const stored = 10 * CS + CS + 4321 // 10 distinct non-zero memory chunks and the disk
    expect(result.hosts.every((h) => h.bytesTotal === stored && h.bytesDone === stored)).toBe(true)
    expect(result.sourceEgressBytes).toBeGreaterThanOrEqual(stored)
    expect(result.sourceEgressBytes / stored).toBeLessThan(1.3)
    for (const [k, t] of targets.entries()) {
      expect(t.completed).toEqual([id])
      const m = await t.manifests.load(id) as Manifest
      expect(isComplete(t.store, m)).toBe(true)
      const out = join(dir, `out-${k}`)
      await materializeLayer(t.store, m.layers[1]!, out)
      expect((await readFile(out)).equals(memory)).toBe(true)
    }
  }, 60_000)

  it('a snapshot with more chunks than the push was opened for fails every target, saying why', async () => {
    const [src, ...targets] = hosts as [Host, ...Host[]]
    const live = src.swarm.pushLive(targets.map((t) => ({ peerId: t.node.peerId })), 2)
    const hold = src.store.hold()
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(CS)
      const builder = new LayerBuilder(src.store, 'memory', `m${i}`, CS, hold)
      const hash = await builder.put(0, data)
      live.announce([{ hash: hash as string, size: CS, data }])
      await builder.finish()
    }
    hold.release()
    const result = await live.result
    expect(result.hosts.map((h) => h.state)).toEqual(['failed', 'failed', 'failed'])
    expect(result.hosts[0]?.error).toMatch(/more than the 2 chunks/)
  }, 60_000)
})

describe('live push from a source that uploads slowly', () => {
  let dir: string
  let hosts: Host[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmesh-live-slow-'))
    hosts = await startHosts(dir, 2_000_000) // past the first, a 1 MiB chunk takes half a second to leave
  })

  afterAll(async () => {
    await stopHosts(hosts)
    await rm(dir, { recursive: true, force: true })
  })

  it('a chunk that reaches a target before its name (bulk channel ahead of the session stream) is kept until named, not refused', async () => {
    const [src, ...targets] = hosts as [Host, ...Host[]]
    const live = src.swarm.pushLive(targets.map((t) => ({ peerId: t.node.peerId })), 16)
    await new Promise((resolve) => setTimeout(resolve, 200)) // sessions and links open
    const info = src.swarm.context.live.get(live.sessionId)!
    const hold = src.store.hold()
    const memory = randomBytes(4 * CS)
    const builder = new LayerBuilder(src.store, 'memory', 'pc.ram', memory.length, hold)
    const hashes: string[] = []
    for (let i = 0; i < 4; i++) hashes.push((await builder.put(i, memory.subarray(i * CS, (i + 1) * CS))) as string)
    // Chunks 0 and 1 are named as usual: one target gets 0, another 1 (slowly: the upload is
    // capped); the third hears "none" and asks again while 1 is still on its way.
    live.announce([0, 1].map((i) => ({ hash: hashes[i]!, size: CS, data: memory.subarray(i * CS, (i + 1) * CS) })))
    await new Promise((resolve) => setTimeout(resolve, 100))
    // Chunks 2 and 3 are in the source's table, so handed out when it asks again, but their
    // names are not on the targets' session streams yet.
    for (let i = 2; i < 4; i++) {
      src.swarm.context.pending.set(hashes[i]!, memory.subarray(i * CS, (i + 1) * CS))
      announceChunks(info, i, [{ hash: hashes[i]!, size: CS }])
      src.swarm.context.hub.emit('gained', info.id, i, true)
    }
    await new Promise((resolve) => setTimeout(resolve, 1500))
    live.announce([]) // now the names go out
    const manifest = createManifest({ name: 'early', layers: [await builder.finish()] })
    const id = await src.manifests.save(manifest)
    hold.release()
    live.seal(id, await src.manifests.loadEncoded(id))
    const result = await live.result
    expect(result.hosts.map((h) => h.state)).toEqual(['done', 'done', 'done'])
    // Nothing was refused and sent again: the source sent each chunk once.
    expect(result.sourceEgressBytes).toBe(4 * CS)
    for (const t of targets) expect(isComplete(t.store, await t.manifests.load(id) as Manifest)).toBe(true)
  }, 60_000)
})
