import { describe, expect, it } from 'vitest'
import { Bitfield } from './bitfield.js'
import { HANDOUT_TIMEOUT_MS, SeedHandout } from './seed-handout.js'

const empty = (n: number): Bitfield => new Bitfield(n)

describe('seed hand-out', () => {
  it('hands each chunk out once over all pullers, lowest first', () => {
    const h = new SeedHandout(6)
    h.join('a', empty(6))
    h.join('b', empty(6))
    expect([h.next('a'), h.next('b'), h.next('a'), h.next('b')]).toEqual([0, 1, 2, 3])
    h.gained('a', [0])
    h.gained('b', [1])
    expect(h.next('b')).toBe(4)
    expect(h.next('a')).toBe(5)
    expect(h.next('a')).toBeUndefined()
    expect(h.handedOut).toBe(6)
  })

  it('hands out the chunks listed first before the others, then goes on from its offset', () => {
    const h = new SeedHandout(8, Date.now, 0, 0.5, [6, 1])
    h.join('a', empty(8))
    h.join('b', Bitfield.from(8, [6]))
    expect(h.next('a')).toBe(1)
    expect(h.next('a')).toBe(4)
    expect([h.next('b'), h.next('b'), h.next('b'), h.next('b'), h.next('b')]).toEqual([5, 7, 0, 2, 3])
    expect(h.next('b')).toBeUndefined()
  })

  it('a puller that asks more often gets more chunks (no static stripes to fall behind on)', () => {
    const h = new SeedHandout(100)
    h.join('fast', empty(100))
    h.join('slow', empty(100))
    const got = { fast: 0, slow: 0 }
    for (let round = 0; round < 50; round++) {
      for (const p of ['fast', 'fast', 'fast', 'slow'] as const) {
        const i = h.next(p)
        if (i !== undefined) { got[p]++; h.gained(p, [i]) }
      }
    }
    expect(got.fast + got.slow).toBe(100)
    expect(got.fast).toBe(75)
  })

  it('never hands out what a live puller holds, nor what the asker holds', () => {
    const h = new SeedHandout(4)
    h.join('a', Bitfield.from(4, [0, 1]))
    h.join('b', Bitfield.from(4, [3]))
    expect(h.next('b')).toBe(2)
    expect(h.next('a')).toBeUndefined()
  })

  it('what a dead puller held and never passed on is handed out again, once, to survivors', () => {
    const h = new SeedHandout(4)
    h.join('a', empty(4))
    h.join('b', empty(4))
    expect(h.next('a')).toBe(0)
    expect(h.next('a')).toBe(1)
    h.gained('a', [0, 1])
    h.gained('b', [0]) // b got chunk 0 from a, not chunk 1
    expect(h.next('b')).toBe(2)
    h.leave('a', false) // a dies
    // chunk 1 now lives nowhere: b gets it; chunk 0 b holds already.
    const again = [h.next('b'), h.next('b')]
    expect(again).toEqual([1, 3])
    expect(h.next('b')).toBeUndefined()
    expect(h.next('a')).toBeUndefined()
  })

  it('a clean leave (finished, still serving) keeps its chunks counted', () => {
    const h = new SeedHandout(2)
    h.join('a', Bitfield.from(2, [0, 1]))
    h.join('b', empty(2))
    h.leave('a', true)
    expect(h.next('b')).toBeUndefined()
  })

  it('a chunk on its way that is never confirmed is handed out again after the timeout', () => {
    let now = 0
    const h = new SeedHandout(1, () => now)
    h.join('a', empty(1))
    h.join('b', empty(1))
    expect(h.next('a')).toBe(0)
    expect(h.next('b')).toBeUndefined()
    now += HANDOUT_TIMEOUT_MS
    expect(h.next('b')).toBe(0)
  })

  it('a rejoining puller replaces its old have-map', () => {
    const h = new SeedHandout(3)
    h.join('a', Bitfield.from(3, [0, 1, 2]))
    h.join('b', empty(3))
    expect(h.next('b')).toBeUndefined()
    h.join('a', Bitfield.from(3, [0])) // restarted with less
    expect(h.next('b')).toBe(1)
    expect(h.livePullers).toBe(2)
  })
})

describe('seed hand-out end game', () => {
  it('when nothing is new, sends the rarest chunk the asker lacks, within the budget', () => {
    const h = new SeedHandout(4, Date.now, 2)
    h.join('a', empty(4))
    h.join('b', empty(4))
    h.join('c', empty(4))
    for (const p of ['a', 'b', 'a', 'b']) { const i = h.next(p) as number; h.gained(p, [i]) }
    // a holds 0 and 2, b holds 1 and 3; c gets 0..3 from relays, except: c got 0 and 1 already.
    h.gained('c', [0, 1])
    const first = h.next('c')
    expect([2, 3]).toContain(first)
    const second = h.next('c')
    expect([2, 3].filter((i) => i !== first)).toContain(second)
    expect(h.duplicates).toBe(2)
    expect(h.next('a')).toBeUndefined() // budget spent
  })

  it('without a budget there is no end game', () => {
    const h = new SeedHandout(1)
    h.join('a', Bitfield.from(1, [0]))
    h.join('b', empty(1))
    expect(h.next('b')).toBeUndefined()
  })
})

describe('several seeds of one push', () => {
  it('start in different places, so their first chunks differ', () => {
    const a = new SeedHandout(100, Date.now, 0, 0)
    const b = new SeedHandout(100, Date.now, 0, 0.5)
    for (const h of [a, b]) h.join('p', empty(100))
    expect(a.next('p')).toBe(0)
    expect(b.next('p')).toBe(50)
    // b wraps around once it reaches the end.
    const late = new SeedHandout(4, Date.now, 0, 0.99)
    late.join('p', empty(4))
    expect([late.next('p'), late.next('p')]).toEqual([3, 0])
  })
})
