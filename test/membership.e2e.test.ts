// Five agents as separate processes on loopback: convergence, kill -9, graceful leave, restart
// with the same identity, and an outsider with the wrong cluster key.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateClusterKey } from '@vmesh/mesh'
import { PeerClient } from '@vmesh/agent'
import { TestCluster, waitFor } from './helpers/agents.js'
import type { TestAgent } from './helpers/agents.js'

describe('membership across five agent processes', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[] = []

  beforeAll(async () => {
    agents = await cluster.startMany(5)
  })
  afterAll(async () => { await cluster.stop() })

  const live = (): TestAgent[] => agents.filter((a) => a.running)

  it('all five see each other alive', async () => {
    for (const a of agents) {
      await waitFor(`${a.name} to see 5 alive`, async () => (await a.members()).filter((m) => m.status === 'alive').length === 5)
    }
    const ids = new Set((await agents[0]!.members()).map((m) => m.id))
    for (const a of agents) expect(new Set((await a.members()).map((m) => m.id))).toEqual(ids)
    const m = (await agents[0]!.members())[0]!
    expect(m.cpu.cores).toBeGreaterThan(0)
    expect(m.memMiB.total).toBeGreaterThan(0)
  })

  it('kill -9 of one is seen as dead by every other', async () => {
    const victim = agents[4]!
    const id = (await victim.self()).id
    await victim.kill('SIGKILL')
    for (const a of live()) await waitFor(`${a.name} to see ${victim.name} dead`, async () => (await a.statusOf(id)) === 'dead', 20_000)
  })

  it('SIGTERM of one is seen as left, and the process exits cleanly', async () => {
    const leaver = agents[3]!
    const id = (await leaver.self()).id
    expect(await leaver.kill('SIGTERM')).toBe(0)
    for (const a of live()) await waitFor(`${a.name} to see ${leaver.name} left`, async () => (await a.statusOf(id)) === 'left', 10_000)
  })

  it('a restarted agent comes back alive with the same id and a higher incarnation', async () => {
    const agent = agents[3]!
    const before = (await agents[0]!.members()).find((m) => m.name === agent.name)!
    await agent.spawn()
    const after = await agent.self()
    expect(after.id).toBe(before.id)
    expect(after.incarnation).toBeGreaterThan(before.incarnation)
    for (const a of live()) await waitFor(`${a.name} to see ${agent.name} alive again`, async () => (await a.statusOf(after.id)) === 'alive', 10_000)
  })

  it('an agent with a different key never appears and cannot open a stream', async () => {
    const otherKey = join(cluster.root, 'other.key')
    writeFileSync(otherKey, generateClusterKey(), { mode: 0o600 })
    const boot = await agents[0]!.address()
    const outsider = await cluster.start('outsider', { bootstrap: [boot], keyFile: otherKey })
    const outsiderId = (await outsider.self()).id
    // Give it time to try: gossip and sync would have brought it in within a second or two.
    await new Promise((resolve) => setTimeout(resolve, 4000))
    for (const a of live().filter((x) => x !== outsider)) {
      expect((await a.members()).some((m) => m.id === outsiderId)).toBe(false)
    }
    expect((await outsider.members()).length).toBe(1)
    const client = await PeerClient.create(boot, otherKey)
    try {
      await expect(client.call({ members: {} })).rejects.toThrow(/cannot reach a vmesh agent/)
    } finally {
      await client.close()
    }
    await outsider.kill('SIGTERM')
  })

  it('any member answers the control protocol over libp2p with the right key', async () => {
    const client = await PeerClient.create(await agents[1]!.address(), cluster.keyFile)
    try {
      const reply = await client.call({ members: {} })
      expect(reply.members?.members?.length).toBeGreaterThanOrEqual(4)
    } finally {
      await client.close()
    }
  })
})
