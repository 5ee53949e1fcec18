import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { HaveBatch } from './have-batch.js'

describe('HaveBatch', () => {
  let frames: number[][]
  const send = async (indices: number[]): Promise<void> => { frames.push(indices) }
  beforeEach(() => { frames = []; vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('with no delay sends what one turn of the event loop added in one frame', async () => {
    const b = new HaveBatch(send, 0, 100)
    b.add(1, false)
    b.add(2, false)
    expect(frames).toEqual([])
    await vi.advanceTimersByTimeAsync(0)
    expect(frames).toEqual([[1, 2]])
  })

  it('gathers later copies for delayMs, then sends them together', async () => {
    const b = new HaveBatch(send, 50, 100)
    b.add(1, false)
    await vi.advanceTimersByTimeAsync(20)
    b.add(2, false)
    await vi.advanceTimersByTimeAsync(20)
    expect(frames).toEqual([])
    await vi.advanceTimersByTimeAsync(10)
    expect(frames).toEqual([[1, 2]])
    // The next one starts a new wait.
    b.add(3, false)
    await vi.advanceTimersByTimeAsync(49)
    expect(frames).toEqual([[1, 2]])
    await vi.advanceTimersByTimeAsync(1)
    expect(frames).toEqual([[1, 2], [3]])
  })

  it('sends an urgent update at once, with whatever was waiting', async () => {
    const b = new HaveBatch(send, 1000, 100)
    b.add(1, false)
    b.add(2, true)
    await vi.advanceTimersByTimeAsync(0)
    expect(frames).toEqual([[1, 2]])
    // The wait that was running is over: nothing is sent twice or late.
    await vi.advanceTimersByTimeAsync(1000)
    expect(frames).toEqual([[1, 2]])
  })

  it('splits what is pending into frames of at most maxPerFrame', async () => {
    const b = new HaveBatch(send, 0, 2)
    for (const i of [1, 2, 3, 4, 5]) b.add(i, false)
    await vi.advanceTimersByTimeAsync(0)
    expect(frames).toEqual([[1, 2], [3, 4], [5]])
  })

  it('adds made while a frame is being sent go in the next frame', async () => {
    let release: () => void = () => {}
    const slow = async (indices: number[]): Promise<void> => {
      frames.push(indices)
      if (frames.length === 1) await new Promise<void>((resolve) => { release = resolve })
    }
    const b = new HaveBatch(slow, 0, 100)
    b.add(1, true)
    await vi.advanceTimersByTimeAsync(0)
    b.add(2, true)
    b.add(3, false)
    await vi.advanceTimersByTimeAsync(0)
    expect(frames).toEqual([[1]])
    release()
    await vi.advanceTimersByTimeAsync(0)
    expect(frames).toEqual([[1], [2, 3]])
  })

  it('stops at the first failed send, reports it once and drops later updates', async () => {
    const errors: string[] = []
    let calls = 0
    const failing = async (): Promise<void> => { calls++; throw new Error('stream reset') }
    const b = new HaveBatch(failing, 0, 1, (err) => errors.push(err.message))
    b.add(1, false)
    b.add(2, false)
    await vi.advanceTimersByTimeAsync(0)
    b.add(3, true)
    await vi.advanceTimersByTimeAsync(0)
    expect(calls).toBe(1)
    expect(errors).toEqual(['stream reset'])
  })

  it('stop() drops what is waiting', async () => {
    const b = new HaveBatch(send, 50, 100)
    b.add(1, false)
    b.stop()
    b.add(2, true)
    await vi.advanceTimersByTimeAsync(100)
    expect(frames).toEqual([])
  })
})
