import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { FlushThrottle } from './flush-throttle.js'

describe('FlushThrottle', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('flushes the first request on the next turn, once for a whole tick of requests', async () => {
    const flush = vi.fn()
    const t = new FlushThrottle(100, flush)
    t.request(); t.request(); t.request()
    expect(flush).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(0)
    expect(flush).toHaveBeenCalledTimes(1)
  })

  it('holds later requests until an interval after the last flush', async () => {
    const flush = vi.fn()
    const t = new FlushThrottle(100, flush)
    t.request()
    await vi.advanceTimersByTimeAsync(0)
    await vi.advanceTimersByTimeAsync(30)
    t.request(); t.request()
    await vi.advanceTimersByTimeAsync(69)
    expect(flush).toHaveBeenCalledTimes(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(flush).toHaveBeenCalledTimes(2)
  })

  it('flushes at once again after a quiet spell', async () => {
    const flush = vi.fn()
    const t = new FlushThrottle(100, flush)
    t.request()
    await vi.advanceTimersByTimeAsync(500)
    t.request()
    await vi.advanceTimersByTimeAsync(0)
    expect(flush).toHaveBeenCalledTimes(2)
  })

  it('drops a pending flush when stopped and ignores requests after', async () => {
    const flush = vi.fn()
    const t = new FlushThrottle(100, flush)
    t.request()
    await vi.advanceTimersByTimeAsync(0)
    t.request()
    t.stop()
    t.request()
    await vi.advanceTimersByTimeAsync(1000)
    expect(flush).toHaveBeenCalledTimes(1)
  })
})
