// A push through the swarm between real agent processes on loopback: one agent imports a file and
// pushes it to three others; every copy exports bit-identical, the source uploads the image about
// once, a second push moves nothing, and the targets advertise the image as held.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, type TestAgent } from './helpers/agents.js'

const SIZE = 24 * 1024 * 1024 + 12345

function makeImage (path: string): string {
  const data = randomBytes(SIZE)
  data.fill(0, 4 << 20, 7 << 20) // a zero region: never stored nor sent
  data.set(data.subarray(0, 1 << 20), 10 << 20) // a repeated chunk: stored and sent once
  writeFileSync(path, data)
  return createHash('sha256').update(data).digest('hex')
}

describe('swarm push between four agents on loopback', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[]
  let digest: string
  let imagePath: string

  beforeAll(async () => {
    agents = await cluster.startMany(4, 's')
    await waitFor('every agent to see four alive members', async () => {
      for (const a of agents) if ((await a.members()).filter((m) => m.status === 'alive').length < 4) return false
      return true
    }, 30_000)
    imagePath = join(cluster.root, 'disk.raw')
    digest = makeImage(imagePath)
  })

  afterAll(async () => { await cluster.stop() })

  it('pushes one image to three hosts; the source uploads it about once; all copies are identical', async () => {
    const [src] = agents as [TestAgent]
    const added = await src.client.call({ imageAdd: { path: imagePath, name: 'disk' } })
    const id = added.imageAdd?.image?.id ?? ''
    const stored = Number(added.imageAdd?.image?.storedBytes ?? 0)
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    expect(stored).toBe(SIZE - 3 * 1024 * 1024 - 1024 * 1024)

    const progress: string[] = []
    let final
    for await (const r of src.client.stream({ imagePush: { ref: 'disk', hosts: 'all' } })) {
      if (r.transferProgress != null) progress.push(`${r.transferProgress.hostName ?? ''}:${r.transferProgress.state ?? ''}`)
      if (r.imagePush != null) final = r.imagePush
    }
    expect(final).toBeDefined()
    const hosts = final?.hosts ?? []
    expect(hosts.map((h) => `${h.state ?? ''}${h.error != null && h.error !== '' ? `: ${h.error}` : ''}`)).toEqual(['done', 'done', 'done'])
    expect(hosts.every((h) => Number(h.bytesDone) === stored)).toBe(true)
    // Progress reached the requester for every host.
    for (const h of ['s1', 's2', 's3']) expect(progress.some((p) => p.startsWith(`${h}:`))).toBe(true)
    const egress = Number(final?.sourceEgressBytes ?? 0)
    expect(egress).toBeGreaterThanOrEqual(stored)
    expect(egress / stored).toBeLessThan(1.3)

    for (const [i, a] of agents.slice(1).entries()) {
      const out = join(cluster.root, `export-${i}.raw`)
      await a.client.call({ imageExport: { ref: id, outPath: out } })
      expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(digest)
    }

    // Targets advertise the image: the source's list shows four holders.
    await waitFor('all four hosts listed as holders', async () => {
      const list = await src.client.call({ imageList: {} })
      return (list.imageList?.images?.[0]?.holders?.length ?? 0) === 4
    }, 15_000)

    // Pushing again moves nothing: every host already holds it.
    await expect(src.client.call({ imagePush: { ref: 'disk', hosts: 's1,s2' } })).resolves.toBeDefined()
    const again = await src.client.call({ imagePush: { ref: id, hosts: 's1' } })
    expect(Number(again.imagePush?.sourceEgressBytes ?? 0)).toBe(0)
  })

  it('explains what is wrong with a bad push request', async () => {
    const [src] = agents as [TestAgent]
    await expect(src.client.call({ imagePush: { ref: 'nope', hosts: 'all' } })).rejects.toThrow(/no image "nope"/)
    await expect(src.client.call({ imagePush: { ref: 'disk', hosts: 'zz-unknown' } })).rejects.toThrow(/no host "zz-unknown"/)
    await expect(src.client.call({ imagePush: { ref: 'disk', hosts: '9' } })).rejects.toThrow(/asked for 9 host/)
    await expect(agents[1]?.client.call({ imageExport: { ref: 'disk', outPath: '/tmp/x' } })).rejects.toThrow(/no image "disk"/)
  })
})
