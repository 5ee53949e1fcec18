import { describe, expect, it } from 'vitest'
import { Bitfield } from './bitfield.js'
import { planLowerBoundMs, planTransfer, reassignStripe, seedEgressRatio } from './transfer-plan.js'

const MiB = 1024 * 1024
const targets = (n: number, count: number, held: Record<number, number[]> = {}): Array<{ id: string, have: Bitfield }> =>
  Array.from({ length: n }, (_, t) => ({ id: `t${t}`, have: Bitfield.from(count, held[t] ?? []) }))

describe('transfer plan arithmetic', () => {
  it('sends each missing chunk from the seeds once, striped round-robin over the targets', () => {
    const sizes = Array<number>(8).fill(MiB)
    const plan = planTransfer(sizes, targets(4, 8))
    expect(plan.seedBytes).toBe(8 * MiB)
    expect([...plan.stripes.values()]).toEqual([[0, 4], [1, 5], [2, 6], [3, 7]])
    // Each target relays its stripe to the 3 others: 2 chunks x 3.
    for (const r of plan.relayBytes.values()) expect(r).toBe(6 * MiB)
    for (const m of plan.missingBytes.values()) expect(m).toBe(8 * MiB)
    expect(seedEgressRatio(plan, 8 * MiB)).toBe(1)
  })

  it('seed egress does not grow with the number of targets', () => {
    const sizes = Array<number>(256).fill(MiB)
    for (const n of [1, 2, 4, 8, 16]) expect(planTransfer(sizes, targets(n, 256)).seedBytes).toBe(256 * MiB)
  })

  it('never sends from a seed what a target already holds; that target relays it', () => {
    const sizes = [MiB, MiB, MiB, MiB]
    const plan = planTransfer(sizes, targets(3, 4, { 0: [0, 1], 2: [1] }))
    expect(plan.seedBytes).toBe(2 * MiB)
    const striped = [...plan.stripes.values()].flat().sort()
    expect(striped).toEqual([2, 3])
    expect(plan.missingBytes.get('t0')).toBe(2 * MiB)
    expect(plan.missingBytes.get('t2')).toBe(3 * MiB)
    // chunk 0: t0 alone sends it to 2 targets; chunk 1: t0 and t2 share sending it to t1.
    expect(plan.relayBytes.get('t0')).toBeGreaterThanOrEqual(2 * MiB + 0.5 * MiB)
  })

  it('balances by bytes when chunk sizes differ', () => {
    const sizes = [4 * MiB, MiB, MiB, MiB, MiB]
    const plan = planTransfer(sizes, targets(2, 5))
    expect(plan.stripes.get('t0')).toEqual([0])
    expect(plan.stripes.get('t1')).toEqual([1, 2, 3, 4])
  })

  it('a nothing-to-do plan is empty', () => {
    const plan = planTransfer([MiB, MiB], targets(2, 2, { 0: [0, 1], 1: [0, 1] }))
    expect(plan.seedBytes).toBe(0)
    expect([...plan.stripes.values()].flat()).toEqual([])
  })

  it('rejects a have-map of the wrong size', () => {
    expect(() => planTransfer([MiB, MiB], [{ id: 'x', have: new Bitfield(3) }])).toThrow(RangeError)
  })

  it('lower bound: with N ≥ 2 targets the time is the single-download limit S/R', () => {
    const sizes = Array<number>(256).fill(MiB)
    const rate = 25e6 // 200 mbit in bytes/s
    const limit = 256 * MiB / rate * 1000
    for (const n of [2, 4, 8]) {
      const plan = planTransfer(sizes, targets(n, 256))
      expect(planLowerBoundMs(plan, { seedUploadBytesPerS: rate, downloadBytesPerS: rate, uploadBytesPerS: rate })).toBeCloseTo(limit, 6)
    }
    // ...unless uploads are slower than downloads: relays then bound it.
    const plan = planTransfer(sizes, targets(4, 256))
    expect(planLowerBoundMs(plan, { seedUploadBytesPerS: rate, downloadBytesPerS: rate, uploadBytesPerS: rate / 2 })).toBeCloseTo(limit * 1.5, 6)
  })

  it('reassigns a dead target\'s stripe over the survivors, least loaded first', () => {
    const load = new Map([['a', 10 * MiB], ['b', 0]])
    const shares = reassignStripe([5, 6, 7], Array<number>(8).fill(4 * MiB), ['a', 'b'], load)
    expect(shares.get('b')).toEqual([5, 6, 7])
    expect(load.get('b')).toBe(12 * MiB)
    expect(reassignStripe([1], [MiB, MiB], [], new Map()).size).toBe(0)
  })
})
