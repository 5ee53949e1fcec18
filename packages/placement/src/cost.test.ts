import { describe, expect, it } from 'vitest'
import { placementConfig } from './config.js'
import { capacity, freeResources, hostBid, marginalCosts, totalCost } from './cost.js'
import type { HostSnapshot, Task } from './cost.js'

const MiB = 1024 * 1024
const config = placementConfig({ memHeadroomMib: 512, diskHeadroomMib: 1024, vcpuOvercommit: 4 })

function host (over: Partial<HostSnapshot> = {}, res: Partial<HostSnapshot['resources']> = {}): HostSnapshot {
  return {
    name: 'b3f2',
    resources: { cpuCores: 8, load1: 0, memTotalMib: 16_384, memFreeMib: 16_000, diskTotalMib: 200_000, diskFreeMib: 150_000, ioUtil: 0, accel: 'kvm', ...res },
    vmCpus: 0,
    vmMemMib: 0,
    reserved: { cpus: 0, memMib: 0, diskBytes: 0 },
    missingBytes: 0,
    ...over
  }
}

const task: Task = { cpus: 1, memMib: 256, diskBytes: 64 * MiB, accel: '', manifestId: '', manifestBytes: 0 }

describe('capacity (hard constraints)', () => {
  it('counts headroom, running VMs and reservations against memory, and says so in MiB', () => {
    // 1024 total - 512 headroom - 200 VMs - 132 reserved = 180 free
    const h = host({ vmMemMib: 200, reserved: { cpus: 0, memMib: 132, diskBytes: 0 } }, { memTotalMib: 1024, memFreeMib: 1000 })
    expect(freeResources(h, config).memMib).toBe(180)
    const c = capacity(h, task, config)
    expect(c.max).toBe(0)
    expect(c.limitedBy).toBe('memory')
    expect(c.reason).toBe('b3f2: needs 256 MiB, has 180 MiB free')
  })

  it('takes the smaller of declared and observed free memory', () => {
    const h = host({}, { memTotalMib: 16_384, memFreeMib: 1024 }) // something else uses memory
    expect(freeResources(h, config).memMib).toBe(512)
    expect(capacity(h, task, config).max).toBe(2)
    expect(capacity(h, task, config).reason).toBe('b3f2: needs 768 MiB for 3 clones, has 512 MiB free')
  })

  it('allows vCPU overcommit up to cores x ratio', () => {
    const h = host({ vmCpus: 30 }, { cpuCores: 8 }) // 32 - 30 = 2 free
    const c = capacity(h, { ...task, memMib: 1 }, config)
    expect(c.max).toBe(2)
    expect(c.limitedBy).toBe('cpu')
    expect(c.reason).toContain('needs 3 vCPUs for 3 clones, has 2 free')
  })

  it('needs disk for the missing snapshot once plus one overlay per clone', () => {
    // 1024 headroom: 1024 + 1100 MiB free on disk -> 1100 MiB usable; 1000 MiB missing -> 100 MiB for overlays
    const h = host({ missingBytes: 1000 * MiB }, { diskFreeMib: 2124 })
    const c = capacity(h, { ...task, diskBytes: 30 * MiB }, config)
    expect(c.max).toBe(3)
    expect(c.limitedBy).toBe('disk')
    expect(c.reason).toContain('of snapshot it lacks')
    const none = capacity(host({ missingBytes: 2000 * MiB }, { diskFreeMib: 2124 }), task, config)
    expect(none.max).toBe(0)
  })

  it('filters on accelerator when asked', () => {
    const c = capacity(host({}, { accel: 'tcg' }), { ...task, accel: 'kvm' }, config)
    expect(c).toMatchObject({ max: 0, limitedBy: 'accel', reason: 'b3f2: needs kvm, has tcg' })
    expect(capacity(host({}, { accel: 'tcg' }), task, config).max).toBeGreaterThan(0)
  })

  it('caps at the per-request limit', () => {
    const c = capacity(host(), { ...task, cpus: 0, memMib: 0, diskBytes: 0 }, config, 7)
    expect(c).toMatchObject({ max: 7, limitedBy: 'limit' })
  })
})

describe('cost', () => {
  it('spread: marginal cost rises with each clone on a host', () => {
    const m = marginalCosts(host(), task, 10, 'spread', config)
    for (let i = 1; i < m.length; i++) expect(m[i]).toBeGreaterThan(m[i - 1] as number)
  })

  it('spread: a fuller, busier or I/O-bound host costs more for the same clone', () => {
    const base = totalCost(host(), task, 1, 'spread', config)
    expect(totalCost(host({ vmMemMib: 8000 }), task, 1, 'spread', config)).toBeGreaterThan(base)
    expect(totalCost(host({ vmCpus: 24 }), task, 1, 'spread', config)).toBeGreaterThan(base)
    expect(totalCost(host({}, { load1: 8 }), task, 1, 'spread', config)).toBeGreaterThan(base)
    expect(totalCost(host({}, { ioUtil: 0.9 }), task, 1, 'spread', config)).toBeGreaterThan(base)
    expect(totalCost(host({}, { diskFreeMib: 5000 }), { ...task, diskBytes: 1 << 30 }, 1, 'spread', config))
      .toBeGreaterThan(totalCost(host(), { ...task, diskBytes: 1 << 30 }, 1, 'spread', config))
  })

  it('the missing snapshot bytes are paid once per host, with its first clone', () => {
    const holds = host()
    const lacks = host({ missingBytes: 2 * 2 ** 30 })
    const a = marginalCosts(holds, task, 3, 'spread', config)
    const b = marginalCosts(lacks, task, 3, 'spread', config)
    expect((b[0] as number) - (a[0] as number)).toBeCloseTo(2 * config.weights.transfer, 1)
    expect(b[1]).toBeCloseTo(a[1] as number, 3)
    expect(b[2]).toBeCloseTo(a[2] as number, 3)
  })

  it('pack: opening a host is dear, further clones cheap and cheaper as it fills', () => {
    const m = marginalCosts(host(), task, 5, 'pack', config)
    expect(m[0]).toBeGreaterThan(config.weights.packHost)
    for (let i = 2; i < m.length; i++) expect(m[i]).toBeLessThanOrEqual(m[i - 1] as number)
    expect(m[1]).toBeLessThan(3)
  })

  it('hostBid returns costs up to capacity and the reason for the rest', () => {
    const b = hostBid(host({}, { memTotalMib: 1536, memFreeMib: 1536 }), task, 8, 'spread', config)
    expect(b.costs).toHaveLength(4)
    expect(b.limitedBy).toBe('memory')
    expect(b.reason).toBe('b3f2: needs 1280 MiB for 5 clones, has 1024 MiB free')
    const all = hostBid(host(), task, 3, 'spread', config)
    expect(all.costs).toHaveLength(3)
    expect(all.reason).toBe('')
  })
})
