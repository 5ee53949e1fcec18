import { describe, it, expect, vi, afterEach } from 'vitest'
import { suspicionTimeoutMs, suspicionMinMs, Suspicion } from './suspicion.js'

describe('suspicion timeout arithmetic', () => {
  it('starts at max with no confirmations and reaches min at the expected count', () => {
    expect(suspicionTimeoutMs(0, 3, 1000, 4000)).toBe(4000)
    expect(suspicionTimeoutMs(3, 3, 1000, 4000)).toBe(1000)
    expect(suspicionTimeoutMs(7, 3, 1000, 4000)).toBe(1000)
  })

  it('shrinks on a log scale: the first confirmation counts most', () => {
    const t1 = suspicionTimeoutMs(1, 3, 1000, 4000)
    const t2 = suspicionTimeoutMs(2, 3, 1000, 4000)
    expect(t1).toBe(Math.floor(4000 - (Math.log(2) / Math.log(4)) * 3000)) // 2500
    expect(t2).toBeLessThan(t1)
    expect(t1 - t2).toBeLessThan(4000 - t1)
  })

  it('uses min when no confirmation is possible (two-member cluster)', () => {
    expect(suspicionTimeoutMs(0, 0, 1000, 4000)).toBe(1000)
  })

  it('scales the minimum with log10 of the cluster size, never below the base', () => {
    expect(suspicionMinMs(1000, 1)).toBe(1000)
    expect(suspicionMinMs(1000, 5)).toBe(1000)
    expect(suspicionMinMs(1000, 100)).toBe(2000)
  })
})

describe('Suspicion timer', () => {
  afterEach(() => { vi.useRealTimers() })

  it('fires at max without confirmations', () => {
    vi.useFakeTimers()
    const fired = vi.fn()
    const s = new Suspicion(1, 'a', 3, 1000, 4000, fired)
    vi.advanceTimersByTime(3999)
    expect(fired).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(fired).toHaveBeenCalledOnce()
    expect(s.confirmations).toBe(0)
  })

  it('confirmations from distinct members shorten the remaining time, measured from the start', () => {
    vi.useFakeTimers()
    const fired = vi.fn()
    const s = new Suspicion(1, 'a', 3, 1000, 4000, fired)
    vi.advanceTimersByTime(900)
    expect(s.confirm('a')).toBe(false) // the first suspector does not confirm itself
    expect(s.confirm('b')).toBe(true)
    expect(s.confirm('b')).toBe(false)
    expect(s.confirm('c')).toBe(true)
    expect(s.confirm('d')).toBe(true)
    // three confirmations: total is min = 1000 ms from the start, 100 ms from now
    vi.advanceTimersByTime(99)
    expect(fired).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(fired).toHaveBeenCalledOnce()
  })

  it('fires at once when confirmations arrive after the shortened deadline passed', () => {
    vi.useFakeTimers()
    const fired = vi.fn()
    const s = new Suspicion(1, 'a', 1, 1000, 4000, fired)
    vi.advanceTimersByTime(2000)
    s.confirm('b')
    vi.advanceTimersByTime(0)
    expect(fired).toHaveBeenCalledOnce()
  })

  it('cancel stops it', () => {
    vi.useFakeTimers()
    const fired = vi.fn()
    const s = new Suspicion(1, 'a', 3, 1000, 4000, fired)
    s.cancel()
    vi.advanceTimersByTime(10_000)
    expect(fired).not.toHaveBeenCalled()
    expect(s.confirm('b')).toBe(false)
  })
})
