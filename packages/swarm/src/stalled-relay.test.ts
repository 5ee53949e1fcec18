// A relay that uploads at a trickle must not hold the others up: once the seed has handed out
// every chunk, a target whose request has waited at that relay for relayWaitMs asks the idle
// seed for the chunk (within stalledRelayFraction). Four swarm services in one process (real
// libp2p nodes and bulk channels on loopback); target 1's uploads are capped at 16 KiB/s.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p } from 'libp2p'
import { generateKey } from '@libp2p/pnet'
import { createClientNode } from '@vmesh/mesh'
import { ChunkStore, createManifest, importLayer, isComplete, ManifestStore } from '@vmesh/store'
import { SwarmService } from './swarm-service.js'

const CS = 64 * 1024
const CHUNKS = 24
const quiet = { debug: () => {}, info: () => {}, warn: () => {} }

interface Host { node: Libp2p, store: ChunkStore, manifests: ManifestStore, swarm: SwarmService, counts: Map<string, number> }

describe('a stalled relay', () => {
  let dir: string
  let hosts: Host[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmesh-stalled-'))
    const psk = new Uint8Array(95)
    generateKey(psk)
    hosts = await Promise.all(Array.from({ length: 4 }, async (_, i) => {
      const node = await createClientNode(psk, ['/ip4/127.0.0.1/tcp/0'])
      const store = await ChunkStore.open({ dir: join(dir, `h${i}`) })
      const manifests = await ManifestStore.open({ dir: join(dir, `h${i}`) })
      const counts = new Map<string, number>()
      const swarm = new SwarmService({
        node, store, manifests, log: quiet,
        counters: { inc: (name: string) => { counts.set(name, (counts.get(name) ?? 0) + 1) } },
        rateLimits: i === 1 ? { uploadBytesPerS: 16 * 1024 } : {},
        config: { relayWaitMs: 100, stalledRelayFraction: 1 }
      })
      await swarm.start()
      return { node, store, manifests, swarm, counts }
    }))
    for (const h of hosts.slice(1)) await hosts[0]!.node.dial(h.node.getMultiaddrs())
  })

  afterAll(async () => {
    for (const h of hosts) { await h.swarm.stop(); await h.node.stop() }
    await rm(dir, { recursive: true, force: true })
  })

  it('the other targets get what waits there from the idle seed, and every target completes', async () => {
    const [src, ...targets] = hosts as [Host, ...Host[]]
    const file = join(dir, 'image')
    await writeFile(file, randomBytes(CHUNKS * CS))
    const layer = await importLayer(src.store, file, 'disk-base', { chunkSize: CS })
    const id = await src.manifests.save(createManifest({ name: 'image', layers: [layer] }))

    const result = await src.swarm.push(id, targets.map((t) => ({ peerId: t.node.peerId })))
    expect(result.hosts.map((h) => h.state)).toEqual(['done', 'done', 'done'])
    for (const t of targets) expect(isComplete(t.store, await t.manifests.load(id))).toBe(true)
    // The two fast targets asked the seed for chunks they had been waiting for at the slow one.
    const asked = [targets[1], targets[2]].reduce((n, t) => n + (t?.counts.get('swarm.past_stalled_relay') ?? 0), 0)
    expect(asked).toBeGreaterThan(0)
  }, 60_000)
})
