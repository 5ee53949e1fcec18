import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { encodeFrame, FrameDecoder, FrameTooLargeError, MalformedFrameError } from './framing.js'

describe('length-prefixed framing', () => {
  it('round-trips frames split at every byte boundary', () => {
    const frames = [new Uint8Array(0), randomBytes(1), randomBytes(127), randomBytes(128), randomBytes(70_000)]
    const wire = Buffer.concat(frames.map(encodeFrame))
    for (const step of [1, 3, 128, wire.length]) {
      const d = new FrameDecoder(1 << 20)
      const out: Uint8Array[] = []
      for (let i = 0; i < wire.length; i += step) out.push(...d.push(wire.subarray(i, i + step)))
      expect(out.map((f) => Buffer.from(f).toString('hex'))).toEqual(frames.map((f) => Buffer.from(f).toString('hex')))
      expect(d.pendingBytes).toBe(0)
    }
  })

  it('rejects a frame longer than the limit before buffering it', () => {
    const d = new FrameDecoder(1000)
    expect(() => d.push(encodeFrame(new Uint8Array(1001)).subarray(0, 3))).toThrow(FrameTooLargeError)
  })

  it('rejects an endless length prefix', () => {
    const d = new FrameDecoder(1000)
    expect(() => d.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toThrow(MalformedFrameError)
  })

  it('survives random bytes: frames, a clear error, or waiting for more', () => {
    for (let i = 0; i < 500; i++) {
      const d = new FrameDecoder(4096)
      try { d.push(randomBytes(1 + (i % 64))) } catch (err) {
        expect(err instanceof FrameTooLargeError || err instanceof MalformedFrameError).toBe(true)
      }
    }
  })
})
