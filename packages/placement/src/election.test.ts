// The election against in-process hosts: each fake host is a real ledger behind a real
// PlacementHost (so every request and reply goes through the codecs), reached through the
// PlacementTransport seam instead of libp2p. Hosts can be made silent or refusing.
import { describe, expect, it } from 'vitest'
import { Counters } from '@vmesh/mesh'
import { pb } from '@vmesh/wire'
import { placementConfig } from './config.js'
import type { Task } from './cost.js'
import { runElection } from './election.js'
import { frameTransport, PlacementHost } from './placement-protocol.js'
import type { Candidate } from './placement-protocol.js'
import { ReservationLedger } from './reservations.js'
import type { HostState } from './reservations.js'

const GiB = 1 << 30
const config = placementConfig({ bidTimeoutMs: 100, reserveTimeoutMs: 100, memHeadroomMib: 512 })
const task: Task = { cpus: 1, memMib: 512, diskBytes: 0, accel: '', manifestId: 'a'.repeat(64), manifestBytes: GiB }

interface FakeHost {
  id: string
  state: HostState
  ledger: ReservationLedger
  host: PlacementHost
  counters: Counters
  silentBid?: boolean
  silentReserve?: boolean
  /** Silent from this reserve request on (1-based); earlier ones are answered. */
  silentFromReserve?: number
  reserves?: number
  /** Runs before the host answers a reserve (to change its state between bid and reserve). */
  beforeReserve?: () => void
}

function fakeHost (id: string, memMib: number, over: Partial<HostState> = {}): FakeHost {
  const state: HostState = {
    name: id,
    resources: { cpuCores: 16, load1: 0, memTotalMib: memMib + 512, memFreeMib: memMib + 512, diskTotalMib: 100_000, diskFreeMib: 100_000, ioUtil: 0, accel: 'kvm' },
    vms: [],
    missingBytes: (t) => t.manifestBytes,
    ...over
  }
  const ledger = new ReservationLedger({ hostState: () => state, config })
  const counters = new Counters()
  return { id, state, ledger, counters, host: new PlacementHost({ ledger, config, counters }) }
}

function cluster (hosts: FakeHost[], requester = 'req'): { transport: ReturnType<typeof frameTransport>, candidates: Candidate[] } {
  const byId = new Map(hosts.map((h) => [h.id, h]))
  const transport = frameTransport(async (c, frame, timeoutMs) => {
    const h = byId.get(c.id)
    if (h === undefined) throw new Error('unknown host')
    const req = pb.PlacementRequest.decode(frame)
    if (req.reserve != null) h.reserves = (h.reserves ?? 0) + 1
    const silent = (req.bid != null && h.silentBid === true) ||
      (req.reserve != null && (h.silentReserve === true || (h.reserves ?? 0) >= (h.silentFromReserve ?? Infinity)))
    if (silent) {
      await new Promise((resolve) => setTimeout(resolve, timeoutMs))
      throw new Error(`no answer within ${timeoutMs} ms`)
    }
    if (req.reserve != null) h.beforeReserve?.()
    return await h.host.answer(frame, requester)
  }, config)
  return { transport, candidates: hosts.map((h) => ({ id: h.id, name: h.id })) }
}

const total = (r: { placements: Array<{ count: number }> }): number => r.placements.reduce((s, p) => s + p.count, 0)
/** Clones per host name (a host may hold several reservations after re-planning). */
function perHost (r: { placements: Array<{ name: string, count: number }> }): Record<string, number> {
  const out: Record<string, number> = {}
  for (const p of r.placements) out[p.name] = (out[p.name] ?? 0) + p.count
  return out
}

describe('election', () => {
  it('spreads clones over equal hosts and reserves on each winner', async () => {
    const hosts = ['a', 'b', 'c'].map((id) => fakeHost(id, 4096))
    const r = await runElection({ ...cluster(hosts), config }, task, 6)
    expect(r.complete).toBe(true)
    expect(perHost(r)).toEqual({ a: 2, b: 2, c: 2 })
    for (const h of hosts) expect(h.ledger.totals().memReservedMib).toBe(1024)
    expect(r.message).toBe('placed 6 clone(s) on 3 host(s)')
  })

  it('pack fills the fewest hosts', async () => {
    const hosts = ['a', 'b', 'c'].map((id) => fakeHost(id, 4096))
    // Each host takes 8: ten clones need two hosts, spread would use all three.
    const r = await runElection({ ...cluster(hosts), config }, task, 10, { policy: 'pack' })
    expect(r.complete).toBe(true)
    expect(Object.values(perHost(r)).sort()).toEqual([2, 8])
  })

  it('prefers a host that already holds the snapshot', async () => {
    const hosts = [fakeHost('lacks', 4096), fakeHost('holds', 4096, { missingBytes: () => 0 })]
    const r = await runElection({ ...cluster(hosts), config }, task, 1)
    expect(perHost(r)).toEqual({ holds: 1 })
  })

  it('says per host why the cluster cannot take all, and reserves nothing', async () => {
    const hosts = [fakeHost('b3f2', 180), fakeHost('c9d1', 1024)]
    // b3f2 has 180 MiB free after headroom; c9d1 has 1024 MiB: four 256 MiB clones.
    const r = await runElection({ ...cluster(hosts), config }, { ...task, memMib: 256 }, 8)
    expect(r.complete).toBe(false)
    expect(r.placed).toBe(0)
    expect(r.placements).toEqual([])
    expect(r.reasons.map((x) => x.reason)).toEqual([
      'b3f2: needs 256 MiB, has 180 MiB free',
      'c9d1: needs 1280 MiB for 5 clones, has 1024 MiB free'
    ])
    expect(r.message).toContain('cannot place 8 clone(s), the cluster can take 4 now')
    for (const h of hosts) expect(h.ledger.totals().reservations).toBe(0)
  })

  it('with partial, places as many as fit', async () => {
    const hosts = [fakeHost('a', 1024), fakeHost('b', 512)]
    const r = await runElection({ ...cluster(hosts), config }, task, 5, { partial: true })
    expect(r.complete).toBe(false)
    expect(r.placed).toBe(3)
    expect(total(r)).toBe(3)
    expect(r.reasons.length).toBe(2)
  })

  it('skips and names a host silent at bid time', async () => {
    const hosts = [fakeHost('a', 4096), fakeHost('mute', 4096), fakeHost('c', 4096)]
    hosts[1]!.silentBid = true
    const r = await runElection({ ...cluster(hosts), config }, task, 4)
    expect(r.complete).toBe(true)
    expect(r.silent).toEqual(['mute'])
    expect(perHost(r)).toEqual({ a: 2, c: 2 })
  })

  it('re-plans around a host silent at reserve time', async () => {
    const hosts = [fakeHost('a', 4096), fakeHost('b', 4096), fakeHost('mute', 4096)]
    hosts[2]!.silentReserve = true
    const r = await runElection({ ...cluster(hosts), config }, task, 6)
    expect(r.complete).toBe(true)
    expect(r.rounds).toBe(2)
    expect(perHost(r)).toEqual({ a: 3, b: 3 })
  })

  it('keeps what a host admitted in an earlier round when it goes silent later', async () => {
    const hosts = [fakeHost('y', 2048), fakeHost('z', 2048)]
    hosts[1]!.silentReserve = true
    hosts[0]!.silentFromReserve = 2
    const r = await runElection({ ...cluster(hosts), config }, task, 4, { partial: true })
    expect(r.placed).toBe(2)
    expect(perHost(r)).toEqual({ y: 2 })
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(hosts[0]!.ledger.totals().memReservedMib).toBe(1024)
    expect(r.reasons.map((x) => x.name).sort()).toEqual(['y', 'z'])
  })

  it('reports progress and releases everything when cancelled', async () => {
    const hosts = [fakeHost('a', 4096), fakeHost('mute', 4096)]
    hosts[1]!.silentReserve = true
    const ac = new AbortController()
    const events: string[] = []
    const run = runElection({ ...cluster(hosts), config }, task, 4, {
      signal: ac.signal,
      onProgress: (e) => {
        events.push(e.type)
        if (e.type === 'reserved') ac.abort()
      }
    })
    await expect(run).rejects.toThrow(/cancelled/)
    expect(events.slice(0, 2)).toEqual(['bids', 'reserved'])
    for (const h of hosts) expect(h.ledger.totals().reservations).toBe(0)
  })

  it('re-plans when a host admits fewer than planned because its state changed', async () => {
    const hosts = [fakeHost('a', 2048), fakeHost('b', 4096)]
    // Between bid and reserve, a VM takes 1 GiB on a: it admits 2, not 3.
    hosts[0]!.beforeReserve = () => { hosts[0]!.state.vms = [{ state: 'running', cpus: 1, memMib: 1024 }] }
    const r = await runElection({ ...cluster(hosts), config }, task, 6)
    expect(r.complete).toBe(true)
    expect(hosts[0]!.ledger.totals().memReservedMib).toBeLessThanOrEqual(1024)
    expect(total(r)).toBe(6)
  })

  it('releases what it reserved when it cannot place all and partial is off', async () => {
    const hosts = [fakeHost('a', 2048), fakeHost('b', 2048)]
    hosts[1]!.beforeReserve = () => { hosts[1]!.state.vms = [{ state: 'running', cpus: 1, memMib: 2048 }] }
    const r = await runElection({ ...cluster(hosts), config }, task, 8)
    expect(r.complete).toBe(false)
    expect(r.placements).toEqual([])
    for (const h of hosts) expect(h.ledger.totals().reservations).toBe(0)
    expect(r.reasons.some((x) => x.reason.startsWith('b: needs 512 MiB, has 0 MiB free'))).toBe(true)
  })

  it('two concurrent elections never overcommit a host', async () => {
    const hosts = ['a', 'b', 'c'].map((id) => fakeHost(id, 2048)) // 4 clones each, 12 in all
    const one = cluster(hosts, 'req1')
    const two = cluster(hosts, 'req2')
    const [r1, r2] = await Promise.all([
      runElection({ ...one, config }, task, 8, { partial: true }),
      runElection({ ...two, config }, task, 8, { partial: true })
    ])
    expect(r1.placed + r2.placed).toBe(12)
    for (const h of hosts) expect(h.ledger.totals().memReservedMib).toBeLessThanOrEqual(2048)
  })

  it('skips hosts whose advert shows the wrong accelerator without asking them', async () => {
    const hosts = [fakeHost('a', 4096), fakeHost('b', 4096)]
    const c = cluster(hosts)
    c.candidates[1]!.accel = 'tcg'
    const r = await runElection({ ...c, config }, { ...task, accel: 'kvm' }, 2)
    expect(perHost(r)).toEqual({ a: 2 })
  })

  it('a host answers garbage and bad requests with an error and counts them', async () => {
    const h = fakeHost('a', 4096)
    const garbage = pb.PlacementReply.decode(await h.host.answer(new Uint8Array([0xff, 0xff, 0xff, 0x0f]), 'x'))
    expect(garbage.error).toMatch(/cannot decode/)
    const bad = pb.PlacementReply.decode(await h.host.answer(pb.PlacementRequest.encode({ bid: { electionId: 'e', task: { cpus: 0, memMib: 1 }, count: 1 } }).finish(), 'x'))
    expect(bad.error).toMatch(/cpus 0 is outside/)
    const huge = pb.PlacementReply.decode(await h.host.answer(pb.PlacementRequest.encode({ reserve: { electionId: 'e', task: { cpus: 1, memMib: 1 }, count: 1_000_000 } }).finish(), 'x'))
    expect(huge.error).toMatch(/count/)
    const empty = pb.PlacementReply.decode(await h.host.answer(new Uint8Array(0), 'x'))
    expect(empty.error).toMatch(/no bid, reserve or release/)
    expect(h.counters.get('rejected.placement.decode')).toBe(1)
    expect(h.counters.get('rejected.placement.invalid')).toBe(2)
    expect(h.ledger.totals().reservations).toBe(0)
  })
})

describe('candidatesFromView', () => {
  it('takes alive members with their accelerator', async () => {
    const { candidatesFromView } = await import('./service.js')
    const entry = (id: string, status: string, accel: string): unknown =>
      ({ id, peerId: { toString: () => id }, claim: { status }, advert: { name: `n-${id}`, resources: { accel } } })
    const view = { list: () => [entry('a', 'alive', 'kvm'), entry('b', 'suspect', 'kvm'), entry('c', 'alive', '')] }
    const c = candidatesFromView(view as unknown as Parameters<typeof candidatesFromView>[0])
    expect(c.map((x) => [x.id, x.name, x.accel])).toEqual([['a', 'n-a', 'kvm'], ['c', 'n-c', undefined]])
  })
})
