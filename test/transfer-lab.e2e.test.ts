// The swarm on real shaped links: five lab hosts at 200 mbit, agents inside the namespaces.
//   1. 64 MiB from host 0 to 4 hosts: every copy bit-identical, host 0's interface sends < 1.3x.
//   2. a target killed (SIGKILL) mid-transfer: the other three finish; restarted, it resumes and
//      fetches only what it lacked.
// Needs root (network namespaces); skips visibly otherwise.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { vmesh } from '@vmesh/wire'
import { Lab } from './lab.js'
import { LabAgents, type LabAgent } from './helpers/lab-agents.js'
import { waitFor } from './helpers/agents.js'

const check = Lab.available()
if (!check.ok) console.warn(`transfer-lab.e2e: skipped: ${check.reason ?? ''}`)

const HOSTS = 5
const RATE = '200mbit'
const SIZE = 64 * 1024 * 1024

function makeFile (path: string): string {
  const data = randomBytes(SIZE)
  writeFileSync(path, data)
  return createHash('sha256').update(data).digest('hex')
}

function sha (path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

async function push (a: LabAgent, ref: string, onProgress?: (p: vmesh.v1.TransferProgress) => void, hosts = 'all'): Promise<vmesh.v1.ImagePushReply> {
  let final: vmesh.v1.ImagePushReply | undefined
  for await (const r of a.client.stream({ imagePush: { ref, hosts } })) {
    if (r.transferProgress != null) onProgress?.(r.transferProgress as vmesh.v1.TransferProgress)
    if (r.imagePush != null) final = r.imagePush as vmesh.v1.ImagePushReply
  }
  if (final === undefined) throw new Error('push gave no final reply')
  return final
}

describe.skipIf(!check.ok)('swarm transfer in the lab (5 hosts, 200 mbit)', () => {
  let lab: Lab
  let cluster: LabAgents
  let agents: LabAgent[]

  beforeAll(async () => {
    lab = await Lab.up(HOSTS, RATE)
    cluster = new LabAgents(lab)
    agents = await cluster.startAll(HOSTS)
  }, 120_000)

  afterAll(async () => {
    await cluster?.stopAll()
    await lab?.down()
    cluster?.removeFiles()
  })

  it('pushes 64 MiB from host 0 to 4 hosts: identical copies, source egress < 1.3x', async () => {
    const src = agents[0] as LabAgent
    const file = join(cluster.root, 'img1.raw')
    const digest = makeFile(file)
    const added = await src.client.call({ imageAdd: { path: file, name: 'img1' } })
    const id = added.imageAdd?.image?.id ?? ''
    const tx0 = cluster.txBytes(0)
    const t0 = Date.now()
    const reply = await push(src, 'img1')
    const ms = Date.now() - t0
    const egress = cluster.txBytes(0) - tx0
    expect((reply.hosts ?? []).map((h) => `${h.hostName ?? ''}:${h.state ?? ''}${h.error != null && h.error !== '' ? ` ${h.error}` : ''}`).sort()).toEqual(['h1:done', 'h2:done', 'h3:done', 'h4:done'])
    console.log(`transfer-lab: 64 MiB to 4 hosts in ${ms} ms (limit ${(SIZE * 8 / 200e6 * 1000).toFixed(0)} ms), host 0 sent ${(egress / SIZE).toFixed(3)}x the image on the wire (agent counted ${(Number(reply.sourceEgressBytes ?? 0) / SIZE).toFixed(3)}x)`)
    expect(egress / SIZE).toBeLessThan(1.3)
    for (const a of agents.slice(1)) {
      const out = join(cluster.root, `img1-${a.name}.raw`)
      await a.client.call({ imageExport: { ref: id, outPath: out } })
      expect(sha(out)).toBe(digest)
    }
  }, 120_000)

  it('a target killed mid-transfer does not stop the others; restarted, it fetches only what it lacks', async () => {
    const src = agents[0] as LabAgent
    const victim = agents[2] as LabAgent
    const file = join(cluster.root, 'img2.raw')
    const digest = makeFile(file)
    const added = await src.client.call({ imageAdd: { path: file, name: 'img2' } })
    const id = added.imageAdd?.image?.id ?? ''
    let killed = false
    const reply = await push(src, 'img2', (p) => {
      if (!killed && p.hostName === victim.name && Number(p.bytesDone) > SIZE * 0.3) {
        killed = true
        void victim.kill('SIGKILL')
      }
    })
    expect(killed).toBe(true)
    const states = Object.fromEntries((reply.hosts ?? []).map((h) => [h.hostName ?? '', h.state ?? '']))
    expect(states).toEqual({ h1: 'done', h2: 'failed', h3: 'done', h4: 'done' })
    for (const a of [agents[1], agents[3], agents[4]] as LabAgent[]) {
      const out = join(cluster.root, `img2-${a.name}.raw`)
      await a.client.call({ imageExport: { ref: id, outPath: out } })
      expect(sha(out)).toBe(digest)
    }

    // Restarted with the same data dir, the victim resumes: it already holds part of the image,
    // and the others (which hold it all) serve the rest, so host 0 sends almost nothing.
    agents[2] = await cluster.start(2)
    await waitFor('host 0 to see the restarted h2 alive', async () => {
      const r = await src.client.call({ members: {} })
      return (r.members?.members ?? []).some((m) => m.name === 'h2' && m.state === 1)
    }, 30_000)
    const again = await push(src, 'img2', undefined, 'h2')
    const h2 = (again.hosts ?? []).find((h) => h.hostName === 'h2')
    expect(h2?.state).toBe('done')
    expect((again.hosts ?? []).length).toBe(1)
    expect(Number(again.sourceEgressBytes ?? 0)).toBeLessThan(SIZE * 0.7)
    const out = join(cluster.root, 'img2-h2.raw')
    await (agents[2] as LabAgent).client.call({ imageExport: { ref: id, outPath: out } })
    expect(sha(out)).toBe(digest)
  }, 180_000)
})
