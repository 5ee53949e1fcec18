// `vmesh clone` end to end on loopback: three agent processes, a source VM on one, clones
// requested from another; every clone runs with its own identity and continues the source's
// memory state, the source keeps running, concurrent clones from two peers never overcommit a
// host, and destroy --clones-of removes them all. Real QEMU (TCG); skips only without qemu.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { counterValues } from '@vmesh/hypervisor'
import { TestCluster, waitFor } from './helpers/agents.js'
import type { TestAgent } from './helpers/agents.js'
import type { ControlClient } from '@vmesh/agent'

function missingQemu (): string | undefined {
  for (const bin of ['qemu-system-x86_64', 'qemu-img']) {
    try { execFileSync(bin, ['--version'], { stdio: 'ignore' }) } catch { return `${bin} is not installed (CI installs qemu-system-x86 and qemu-utils)` }
  }
  return undefined
}
const skipReason = missingQemu()
if (skipReason !== undefined) console.log(`clone e2e skipped: ${skipReason}`)

async function clone (client: ControlClient, vm: string, count: number, partial = false) {
  const progress: string[] = []
  let final
  for await (const r of client.stream({ clone: { vm, count, partial } })) {
    if (r.cloneProgress?.message) progress.push(`${r.cloneProgress.phase}: ${r.cloneProgress.message}`)
    if (r.clone != null) final = r.clone
  }
  if (final == null) throw new Error('no final clone reply')
  return { final, progress }
}

async function vms (agent: TestAgent) {
  return (await agent.client.call({ vmList: {} })).vmList?.vms ?? []
}

async function consoleOf (agent: TestAgent, vm: string): Promise<string> {
  return (await agent.client.call({ vmConsole: { vm, tailBytes: 1 << 20 } })).vmConsole?.text ?? ''
}

describe.skipIf(skipReason !== undefined)('vmesh clone across three agents', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[] = []

  beforeAll(async () => {
    // Capped downloads make a transfer last about a second, as on a real link: long enough that
    // the winners start their clones' QEMUs while the memory arrives (the path clones take in a rack).
    agents = await cluster.startMany(3, 'k', { extraArgs: ['--download-rate', '300mbit'] })
    for (const a of agents) await waitFor(`${a.name} sees 3 alive`, async () => (await a.members()).filter((m) => m.status === 'alive').length === 3)
    const created = await agents[0]!.client.call({ vmCreate: { name: 'src', cpus: 1, memMib: 128 } })
    expect(created.vmCreate?.vm?.state).toBe('running')
    // Let the source's counter run a few seconds, so a clone that restarted would show it.
    await waitFor('source counter past 3', async () => Math.max(0, ...counterValues(await consoleOf(agents[0]!, 'src'))) >= 3, 60_000, 500)
  }, 300_000)

  afterAll(async () => {
    for (const a of agents) {
      for (const v of await vms(a).catch(() => [])) {
        if (v.host === a.name) await a.client.call({ vmDestroy: { vm: v.name ?? '' } }).catch(() => {})
      }
    }
    await cluster.stop()
  }, 120_000)

  it('clone 6 from another peer: all six run with their own identity and the source state', async () => {
    const before = Math.max(...counterValues(await consoleOf(agents[0]!, 'src')))
    const { final, progress } = await clone(agents[1]!.client, 'src', 6)
    const running = (final.clones ?? []).filter((c) => c.state === 'running')
    expect(running).toHaveLength(6)
    for (const c of running) expect(c.name).toMatch(/^src-[0-9a-f]{4}$/)
    expect(new Set(running.map((c) => c.name)).size).toBe(6)
    expect(new Set(running.map((c) => c.mac)).size).toBe(6)
    expect(progress.some((p) => p.startsWith('snapshot'))).toBe(true)
    expect(progress.filter((p) => /starting \d+ clone\(s\) while the snapshot's memory arrives/.test(p)).length).toBeGreaterThan(0)
    expect(final.sourcePauseMs).toBeGreaterThan(0)
    // Adverts carry the new VMs to every agent within moments.
    await waitFor('every clone visible from a third agent', async () => (await vms(agents[2]!)).filter((v) => v.source === 'src' && v.state === 'running').length === 6, 20_000, 200)
    const all = await vms(agents[2]!)
    for (const c of running) {
      const seen = all.find((v) => v.name === c.name)
      expect(seen?.state).toBe('running')
      expect(seen?.source).toBe('src')
      expect(c.hostname).toBe(c.name)
      // The clone's own console starts where the source's counter was, not at 1.
      const host = agents.find((a) => a.name === c.host)!
      await waitFor(`${c.name} prints its counter`, async () => counterValues(await consoleOf(host, c.name ?? '')).length > 0, 30_000, 500)
      const first = counterValues(await consoleOf(host, c.name ?? ''))[0]!
      expect(first).toBeGreaterThanOrEqual(before)
    }
    // The source never stopped: its counter moved on.
    await waitFor('source counter moves', async () => Math.max(...counterValues(await consoleOf(agents[0]!, 'src'))) > before + 2, 30_000, 500)
  }, 300_000)

  it('two clones at once from two peers never overcommit a host', async () => {
    const [a, b] = await Promise.all([clone(agents[1]!.client, 'src', 3, true), clone(agents[2]!.client, 'src', 3, true)])
    const started = [...(a.final.clones ?? []), ...(b.final.clones ?? [])].filter((c) => c.state === 'running')
    expect(new Set(started.map((c) => c.name)).size).toBe(started.length)
    // Capacity per host: cores x overcommit 4 vCPUs (placement's default); no host beyond it.
    const members = await agents[0]!.members()
    const all = await vms(agents[0]!)
    for (const m of members) {
      const vcpus = all.filter((v) => v.host === m.name).reduce((s, v) => s + (v.cpus ?? 0), 0)
      expect(vcpus).toBeLessThanOrEqual(m.cpu.cores * 4)
    }
  }, 300_000)

  it('destroy --clones-of removes every clone in the cluster and leaves the source', async () => {
    const reply = await agents[2]!.client.call({ vmDestroy: { vm: 'src', clonesOf: true } })
    expect((reply.vmDestroy?.destroyed ?? []).length).toBeGreaterThanOrEqual(6)
    await waitFor('only the source is left', async () => {
      const left = await vms(agents[1]!)
      return left.length === 1 && left[0]?.name === 'src'
    }, 30_000, 500)
  }, 120_000)
})

describe.skipIf(skipReason !== undefined)('vmesh clone when a winner dies mid-transfer', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[] = []

  beforeAll(async () => {
    const first = await cluster.start('w0')
    const boot = await first.address()
    // Slow downloads on the other hosts, so there is a transfer to interrupt.
    const slow = { VMESH_DOWNLOAD_RATE: '100mbit' }
    const rest = await Promise.all([1, 2, 3].map(async (i) => await cluster.start(`w${i}`, { bootstrap: [boot], env: slow })))
    agents = [first, ...rest]
    for (const a of agents) await waitFor(`${a.name} sees 4 alive`, async () => (await a.members()).filter((m) => m.status === 'alive').length === 4)
    await first.client.call({ vmCreate: { name: 'app', cpus: 1, memMib: 128 } })
  }, 300_000)

  afterAll(async () => {
    for (const a of agents.filter((x) => x.running)) {
      for (const v of await vms(a).catch(() => [])) {
        if (v.host === a.name) await a.client.call({ vmDestroy: { vm: v.name ?? '' } }).catch(() => {})
      }
    }
    await cluster.stop()
  }, 120_000)

  it('kill -9 of a winner during the transfer re-places its clones and says so', async () => {
    let victim: TestAgent | undefined
    let final
    // Six clones over four hosts: spread puts some on w2 or w3, whose transfer can be interrupted.
    for await (const r of agents[1]!.client.stream({ clone: { vm: 'app', count: 6, policy: 'spread' } })) {
      const p = r.cloneProgress
      if (victim === undefined && p?.phase === 'transfer' && Number(p.bytesDone ?? 0) > 0 && p.host !== 'w1') {
        victim = agents.find((a) => a.name === p.host)
        await victim?.kill('SIGKILL')
      }
      if (r.clone != null) final = r.clone
    }
    expect(victim, `no transfer to interrupt; placement: ${JSON.stringify((final?.clones ?? []).map((c) => c.host))}, notes: ${JSON.stringify(final?.notes)}`).toBeDefined()
    const running = (final?.clones ?? []).filter((c) => c.state === 'running')
    expect(running).toHaveLength(6)
    expect(running.every((c) => c.host !== victim!.name)).toBe(true)
    expect((final?.notes ?? []).some((n) => n.startsWith(victim!.name) && /re-placed/.test(n))).toBe(true)
  }, 300_000)
})
