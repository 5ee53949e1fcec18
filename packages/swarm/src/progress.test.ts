import { describe, expect, it } from 'vitest'
import { etaMs, initialRate, updateRate } from './progress.js'
import { refill, waitMsFor, RateLimiter } from './rate-limiter.js'

describe('progress arithmetic', () => {
  it('takes the first real rate as it is, then smooths toward a steady rate', () => {
    let s = initialRate(0, 0)
    s = updateRate(s, 0, 250) // nothing yet
    expect(s.rate).toBe(0)
    s = updateRate(s, 25e6 / 4, 500) // 25 MB/s
    expect(s.rate).toBeCloseTo(25e6, -3)
    for (let t = 750; t <= 20_000; t += 250) s = updateRate(s, s.lastBytes + 10e6 / 4, t) // 10 MB/s
    expect(s.rate).toBeCloseTo(10e6, -4)
  })

  it('ignores samples that do not move the clock forward', () => {
    const s = updateRate(initialRate(0, 100), 1e6, 100)
    expect(s.rate).toBe(0)
  })

  it('ETA from bytes left and rate; unknown without a rate', () => {
    expect(etaMs(50e6, 25e6)).toBe(2000)
    expect(etaMs(0, 0)).toBe(0)
    expect(etaMs(10, 0)).toBeUndefined()
  })
})

describe('rate limiter arithmetic', () => {
  it('refills at the rate up to the burst', () => {
    expect(refill({ tokens: 0, atMs: 0 }, 1000, 1e6, 5e5)).toEqual({ tokens: 5e5, atMs: 1000 })
    expect(refill({ tokens: -1e6, atMs: 0 }, 500, 1e6, 5e5)).toEqual({ tokens: -5e5, atMs: 500 })
  })

  it('waits off a debt', () => {
    expect(waitMsFor(-2e6, 1e6)).toBe(2000)
    expect(waitMsFor(10, 1e6)).toBe(0)
  })

  it('caps a real stream of takes at the rate', async () => {
    const l = new RateLimiter(4 * 1024 * 1024, 256 * 1024) // 4 MiB/s
    const t0 = Date.now()
    for (let i = 0; i < 9; i++) await l.take(256 * 1024) // 2.25 MiB, 0.25 MiB of it free as burst
    const ms = Date.now() - t0
    expect(ms).toBeGreaterThanOrEqual(400)
    expect(ms).toBeLessThan(2000)
    expect(new RateLimiter(0).unlimited).toBe(true)
  })
})
