import { afterEach, describe, expect, it, vi } from 'vitest'
import { placementConfig } from './config.js'
import { ReservationLedger } from './reservations.js'
import type { HostState } from './reservations.js'
import type { Task } from './cost.js'

const config = placementConfig({ memHeadroomMib: 512, minLeaseMs: 10 })
const task: Task = { cpus: 1, memMib: 256, diskBytes: 0, accel: '', manifestId: 'm', manifestBytes: 0 }

function state (over: Partial<HostState> = {}): HostState {
  return {
    name: 'h1',
    // 2048 - 512 headroom = 1536 MiB: six clones of 256 MiB
    resources: { cpuCores: 4, load1: 0, memTotalMib: 2048, memFreeMib: 2048, diskTotalMib: 100_000, diskFreeMib: 100_000, ioUtil: 0, accel: 'kvm' },
    vms: [],
    missingBytes: () => 0,
    ...over
  }
}

const req = (count: number, leaseMs = 60_000): Parameters<ReservationLedger['admit']>[0] =>
  ({ electionId: 'e', owner: 'p', task, count, leaseMs })

afterEach(() => { vi.useRealTimers() })

describe('ReservationLedger', () => {
  it('admits against current state and counts reservations in the totals', async () => {
    const ledger = new ReservationLedger({ hostState: () => state(), config })
    const a = await ledger.admit(req(4))
    expect(a).toMatchObject({ admitted: 4, reason: '' })
    expect(ledger.totals()).toMatchObject({ vcpusReserved: 4, memReservedMib: 1024, reservations: 1 })
    const b = await ledger.admit(req(4))
    expect(b.admitted).toBe(2)
    expect(b.reason).toBe('h1: needs 768 MiB for 3 clones, has 512 MiB free')
    const c = await ledger.admit(req(1))
    expect(c).toMatchObject({ admitted: 0, reservationId: '', reason: 'h1: needs 256 MiB, has 0 MiB free' })
    ledger.stop()
  })

  it('counts running VMs but not stopped ones', async () => {
    const ledger = new ReservationLedger({
      hostState: () => state({ vms: [{ state: 'running', cpus: 1, memMib: 1024 }, { state: 'stopped', cpus: 1, memMib: 1024 }] }),
      config
    })
    expect((await ledger.admit(req(6))).admitted).toBe(2)
    ledger.stop()
  })

  it('serialises concurrent admissions even when the host state is read asynchronously', async () => {
    const ledger = new ReservationLedger({
      hostState: async () => { await new Promise((resolve) => setTimeout(resolve, 5)); return state() },
      config
    })
    const results = await Promise.all(Array.from({ length: 10 }, async () => await ledger.admit(req(2))))
    expect(results.reduce((s, r) => s + r.admitted, 0)).toBe(6)
    expect(ledger.totals().memReservedMib).toBe(1536)
    ledger.stop()
  })

  it('a lease expires when the clones never arrive', async () => {
    vi.useFakeTimers()
    const changes: number[] = []
    const ledger = new ReservationLedger({ hostState: () => state(), config, onChange: () => { changes.push(ledger.totals().memReservedMib) } })
    const a = await ledger.admit(req(2, 1000))
    expect(ledger.totals().memReservedMib).toBe(512)
    vi.advanceTimersByTime(999)
    expect(ledger.get(a.reservationId)).toBeDefined()
    vi.advanceTimersByTime(2)
    expect(ledger.get(a.reservationId)).toBeUndefined()
    expect(ledger.totals().memReservedMib).toBe(0)
    expect(changes).toEqual([512, 0])
  })

  it('renew pushes the lease out; arrival drops the share of each clone', async () => {
    vi.useFakeTimers()
    const ledger = new ReservationLedger({ hostState: () => state(), config })
    const a = await ledger.admit(req(3, 1000))
    vi.advanceTimersByTime(900)
    expect(ledger.renew(a.reservationId, 1000)).toBe(true)
    vi.advanceTimersByTime(900)
    expect(ledger.arrived(a.reservationId, 2)).toBe(true)
    expect(ledger.totals().memReservedMib).toBe(256)
    expect(ledger.arrived(a.reservationId)).toBe(true)
    expect(ledger.totals()).toMatchObject({ memReservedMib: 0, reservations: 0 })
    expect(ledger.arrived(a.reservationId)).toBe(false)
  })

  it('only the owner releases over the network', async () => {
    const ledger = new ReservationLedger({ hostState: () => state(), config })
    const a = await ledger.admit(req(1))
    expect(ledger.release(a.reservationId, 'someone-else')).toBe(false)
    expect(ledger.release(a.reservationId, 'p')).toBe(true)
    expect(ledger.release(a.reservationId)).toBe(false)
  })

  it('holds disk for the missing snapshot until the first clone arrives', async () => {
    const ledger = new ReservationLedger({ hostState: () => state({ missingBytes: () => 5000 }), config })
    const a = await ledger.admit({ ...req(2), task: { ...task, diskBytes: 100 } })
    expect(ledger.totals().diskReservedBytes).toBe(5200)
    ledger.arrived(a.reservationId)
    expect(ledger.totals().diskReservedBytes).toBe(100)
    ledger.stop()
  })

  it('bids against its reservations', async () => {
    const ledger = new ReservationLedger({ hostState: () => state(), config })
    const before = await ledger.bid(task, 10, 'spread')
    expect(before.costs).toHaveLength(6)
    await ledger.admit(req(4))
    const after = await ledger.bid(task, 10, 'spread')
    expect(after.costs).toHaveLength(2)
    expect(after.costs[0]).toBeGreaterThan(before.costs[0] as number)
    ledger.stop()
  })
})
