import { describe, expect, it } from 'vitest'
import { assign, hullMarginals, isConvex } from './assign.js'
import type { HostCosts } from './assign.js'

/** Least total cost of placing exactly n clones, by trying every split. */
function brute (hosts: HostCosts[], n: number): number {
  const go = (i: number, left: number): number => {
    if (i === hosts.length) return left === 0 ? 0 : Infinity
    const h = hosts[i] as HostCosts
    let best = Infinity
    let acc = 0
    for (let j = 0; j <= Math.min(left, h.costs.length); j++) {
      if (j > 0) acc += h.costs[j - 1] as number
      best = Math.min(best, acc + go(i + 1, left - j))
    }
    return best
  }
  return go(0, n)
}

/** Deterministic pseudo-random numbers, so a failure can be replayed. */
function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 }
}

function randomHosts (r: () => number, convex: boolean): HostCosts[] {
  const hosts: HostCosts[] = []
  const n = 1 + Math.floor(r() * 4)
  for (let i = 0; i < n; i++) {
    const cap = Math.floor(r() * 5)
    const costs: number[] = []
    let c = r() * 3
    for (let j = 0; j < cap; j++) {
      if (convex) { costs.push(c); c += r() * 2 } else costs.push(r() * 5 + (j === 0 ? r() * 6 : 0))
    }
    hosts.push({ id: `h${i}`, costs })
  }
  return hosts
}

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0)

describe('assign', () => {
  it('greedy on convex marginal costs equals brute force (300 random cases)', () => {
    const r = rng(7)
    for (let t = 0; t < 300; t++) {
      const hosts = randomHosts(r, true)
      const cap = hosts.reduce((s, h) => s + h.costs.length, 0)
      const n = Math.floor(r() * (cap + 1))
      const a = assign(hosts, n)
      expect(a.method).toBe('greedy')
      expect(a.placed).toBe(n)
      expect(a.cost).toBeCloseTo(brute(hosts, n), 9)
    }
  })

  it('non-convex costs (transfer on the first clone, pack) use the exact programme, equal to brute force', () => {
    const r = rng(11)
    let dp = 0
    for (let t = 0; t < 300; t++) {
      const hosts = randomHosts(r, false)
      const cap = hosts.reduce((s, h) => s + h.costs.length, 0)
      const n = Math.floor(r() * (cap + 1))
      const a = assign(hosts, n)
      if (a.method === 'dp') dp++
      expect(a.placed).toBe(n)
      expect(a.cost).toBeCloseTo(brute(hosts, n), 9)
      for (const h of hosts) expect(a.counts.get(h.id) ?? 0).toBeLessThanOrEqual(h.costs.length)
    }
    expect(dp).toBeGreaterThan(100)
  })

  it('plain greedy would be wrong with a fixed first-clone cost', () => {
    // Host a: first clone 10 (the transfer), then 0.1 each; host b: 1, 2, 3. For 4 clones greedy by
    // next marginal takes b, b, b, a = 16; all four on a cost 10.3.
    const hosts = [{ id: 'a', costs: [10, 0.1, 0.1, 0.1] }, { id: 'b', costs: [1, 2, 3] }]
    const a = assign(hosts, 4)
    expect(a.cost).toBeCloseTo(brute(hosts, 4), 9)
    expect(a.counts.get('a')).toBe(4)
    expect(a.cost).toBeCloseTo(10.3, 9)
  })

  it('spreads equal hosts and places several per host when needed', () => {
    const hosts = ['a', 'b', 'c'].map((id) => ({ id, costs: [1, 2, 3, 4] }))
    expect([...assign(hosts, 3).counts.values()]).toEqual([1, 1, 1])
    expect(sum(assign(hosts, 7).counts)).toBe(7)
  })

  it('partial places as many as fit; otherwise none when capacity is short', () => {
    const hosts = [{ id: 'a', costs: [1, 2] }, { id: 'b', costs: [1] }]
    expect(assign(hosts, 5, true).placed).toBe(3)
    expect(assign(hosts, 5, false)).toMatchObject({ placed: 0 })
    expect(assign(hosts, 3, false).placed).toBe(3)
    expect(assign([], 2).placed).toBe(0)
  })

  it('hull marginals are convex and keep the total', () => {
    const costs = [10, 0.1, 0.1, 5, 0.2]
    const h = hullMarginals(costs)
    expect(isConvex(h)).toBe(true)
    expect(h.reduce((a, b) => a + b, 0)).toBeCloseTo(costs.reduce((a, b) => a + b, 0), 9)
  })
})
