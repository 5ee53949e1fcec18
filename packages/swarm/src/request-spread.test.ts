import { describe, expect, it } from 'vitest'
import { spreadRequests } from './request-spread.js'

interface FakeLink { name: string, inflight: number, holds: number[] }

/** next() as the puller does it: the lowest chunk the link holds that nobody was asked for yet. */
function picker (asked: Set<number>) {
  return (l: FakeLink): number | undefined => {
    const i = l.holds.find((k) => !asked.has(k))
    if (i !== undefined) asked.add(i)
    return i
  }
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

describe('spreadRequests', () => {
  it('gives every link one request before any link gets a second', () => {
    const links = ['a', 'b', 'c'].map((name) => ({ name, inflight: 0, holds: range(10) }))
    const out = spreadRequests(links, (l) => l.inflight, 4, 6, picker(new Set()))
    expect(links.map((l) => out.get(l))).toEqual([[0, 3], [1, 4], [2, 5]])
  })

  it('counts what is already outstanding and stops at perLink', () => {
    const [a, b] = [{ name: 'a', inflight: 3, holds: range(20) }, { name: 'b', inflight: 0, holds: range(20) }]
    const out = spreadRequests([a, b], (l) => l.inflight, 4, 100, picker(new Set()))
    expect(out.get(a)).toHaveLength(1)
    expect(out.get(b)).toHaveLength(4)
  })

  it('skips a link once it has nothing more to give, and never exceeds the budget', () => {
    const a = { name: 'a', inflight: 0, holds: [7] }
    const b = { name: 'b', inflight: 0, holds: range(10) }
    let askedOfA = 0
    const pick = picker(new Set())
    const out = spreadRequests([a, b], (l) => l.inflight, 4, 3, (l) => { if (l === a) askedOfA++; return pick(l) })
    expect(out.get(a)).toEqual([7])
    expect(out.get(b)).toEqual([0, 1])
    expect(askedOfA).toBe(2)
  })

  it('asks for nothing with no budget or no links', () => {
    const a = { name: 'a', inflight: 0, holds: range(4) }
    expect(spreadRequests([a], (l) => l.inflight, 4, 0, picker(new Set())).size).toBe(0)
    expect(spreadRequests([], (l: FakeLink) => l.inflight, 4, 5, picker(new Set())).size).toBe(0)
  })
})
