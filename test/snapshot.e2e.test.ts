// `vmesh snapshot ls` / `snapshot rm` end to end: three agent processes on loopback, a real VM
// cloned twice; the snapshot is listed with its holders and users, `rm` refuses while the clones
// run (naming them), and once they are destroyed the winners free its files and chunks while the
// source host keeps the layer the source VM's disk chain still uses. Real QEMU (TCG); skips
// only without qemu.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { counterValues } from '@vmesh/hypervisor'
import { TestCluster, waitFor, cliBin, missingQemu } from './helpers/agents.js'
import type { TestAgent } from './helpers/agents.js'

const skipReason = missingQemu()
if (skipReason !== undefined) console.log(`snapshot e2e skipped: ${skipReason}`)

const run = promisify(execFile)

async function chunkBytes (agent: TestAgent): Promise<number> {
  const counters = (await agent.client.call({ stats: {} })).stats?.counters ?? []
  return Number(counters.find((c) => c.name === 'store.chunk_bytes')?.value ?? -1)
}

async function list (agent: TestAgent) {
  return (await agent.client.call({ snapshotList: {} })).snapshotList?.snapshots ?? []
}

async function remove (agent: TestAgent, ref: string, force = false) {
  const r = (await agent.client.call({ snapshotRemove: { ref, force } })).snapshotRemove
  return new Map((r?.hosts ?? []).map((h) => [h.host ?? '', h]))
}

describe.skipIf(skipReason !== undefined)('vmesh snapshot ls / rm across three agents', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[] = []
  let source: TestAgent
  let clones: Array<{ name: string, host: string }> = []

  beforeAll(async () => {
    agents = await cluster.startMany(3, 'p')
    source = agents[0]!
    for (const a of agents) await waitFor(`${a.name} sees 3 alive`, async () => (await a.members()).filter((m) => m.status === 'alive').length === 3)
    // More than half a host's vCPU capacity (cores x overcommit 4): no clone fits beside the
    // source and two clones never share a host, so each of the other two hosts wins one.
    const cpus = (await source.self()).cpu.cores * 2 + 1
    await source.client.call({ vmCreate: { name: 'web', cpus, memMib: 128 } })
    await waitFor('the guest runs', async () => counterValues((await source.client.call({ vmConsole: { vm: 'web', tailBytes: 1 << 20 } })).vmConsole?.text ?? '').length > 0, 60_000, 500)
    let final
    for await (const r of agents[1]!.client.stream({ clone: { vm: 'web', count: 2, policy: 'spread' } })) if (r.clone != null) final = r.clone
    clones = (final?.clones ?? []).filter((c) => c.state === 'running').map((c) => ({ name: c.name ?? '', host: c.host ?? '' }))
    expect(clones).toHaveLength(2)
  }, 300_000)

  afterAll(async () => {
    for (const a of agents) {
      for (const v of (await a.client.call({ vmList: {} }).catch(() => undefined))?.vmList?.vms ?? []) {
        if (v.host === a.name) await a.client.call({ vmDestroy: { vm: v.name ?? '' } }).catch(() => {})
      }
    }
    await cluster.stop()
  }, 120_000)

  it('ls, rm refused while clones run, rm after destroy frees the winners and keeps the source\'s layer until the source is destroyed', async () => {
    // ls from a host that holds nothing of it: one snapshot, its holders and every user.
    const third = agents.find((a) => a !== source && !clones.some((c) => c.host === a.name)) ?? agents[2]!
    const [snap] = await list(third)
    expect(snap?.sourceVm).toBe('web')
    const id = snap?.manifestId ?? ''
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    expect(snap?.holders).toContain(source.name)
    for (const c of clones) expect(snap?.holders).toContain(c.host)
    expect(snap?.storedBytes).toBeGreaterThan(0)
    const users = (snap?.users ?? []).map((u) => `${u.vm}@${u.host}${u.source === true ? ' (source)' : ''}`).sort()
    expect(users).toEqual([`web@${source.name} (source)`, ...clones.map((c) => `${c.name}@${c.host}`)].sort())
    const { stdout } = await run(process.execPath, [cliBin, 'snapshot', 'ls', '--data-dir', third.dataDir], { timeout: 30_000 })
    expect(stdout).toContain(id.slice(0, 12))
    expect(stdout).toContain('web@' + source.name + ' (source)')

    // rm while the clones run: every host keeps it and says which VMs are in the way.
    const refused = await remove(third, id.slice(0, 12))
    for (const c of clones) {
      expect(refused.get(c.host)?.inUseBy).toContain(c.name)
      expect(refused.get(c.host)?.manifestRemoved).toBe(false)
    }
    expect(refused.get(source.name)?.inUseBy).toContain('web')
    const cli = await run(process.execPath, [cliBin, 'snapshot', 'rm', id.slice(0, 12), '--data-dir', third.dataDir], { timeout: 60_000 }).catch((err: { stdout: string, code: number }) => err)
    expect('code' in cli ? cli.code : 0).toBe(1)
    for (const c of clones) expect(cli.stdout).toMatch(new RegExp(`${c.host}: kept, in use by .*${c.name}`))
    expect(cli.stdout).toContain('the source: its disk chain includes')

    // Destroy the clones; rm again frees every winner's files and chunks.
    const winners = [...new Set(clones.map((c) => c.host))].filter((h) => h !== source.name).map((h) => agents.find((a) => a.name === h)!)
    expect(winners.length).toBeGreaterThan(0)
    await third.client.call({ vmDestroy: { vm: 'web', clonesOf: true } })
    const before = new Map(await Promise.all(winners.map(async (w) => [w.name, await chunkBytes(w)] as const)))
    const done = await remove(third, id)
    for (const w of winners) {
      const r = done.get(w.name)
      expect(r?.error).toBe('')
      expect(r?.manifestRemoved).toBe(true)
      expect(Number(r?.freedBytes)).toBeGreaterThan(0)
      expect(await chunkBytes(w)).toBeLessThan(before.get(w.name)!)
      expect(existsSync(join(w.dataDir, 'snapshots', `m-${id.slice(0, 16)}`))).toBe(false)
    }
    // The source host: its VM's disk chain has the snapshot's disk-delta as a backing file.
    expect(done.get(source.name)?.inUseBy).toEqual(['web'])
    expect(done.get(source.name)?.manifestRemoved).toBe(false)
    const [left] = await list(third)
    expect(left?.holders).toEqual([source.name])
    expect((left?.users ?? []).map((u) => u.vm)).toEqual(['web'])

    // --force drops the source host's manifest and chunks; the files the source uses stay.
    const snapshotDir = join(source.dataDir, 'snapshots', left?.snapshotId ?? '')
    const forced = await remove(third, id, true)
    expect(forced.get(source.name)?.manifestRemoved).toBe(true)
    expect(existsSync(snapshotDir)).toBe(true)
    expect((await source.client.call({ vmConsole: { vm: 'web', tailBytes: 1024 } })).vmConsole?.text).toBeDefined()

    // Once the source is destroyed, nothing uses that directory: it goes too.
    await third.client.call({ vmDestroy: { vm: 'web' } })
    expect(existsSync(snapshotDir)).toBe(false)
  }, 120_000)
})
