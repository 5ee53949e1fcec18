import { describe, expect, it } from 'vitest'
import { parseRate, rateLimitsOf } from './image-handlers.js'

describe('swarm rate caps', () => {
  it('parses tc-style rates and bytes per second', () => {
    expect(parseRate('200mbit')).toBe(25_000_000)
    expect(parseRate('1.5gbit')).toBe(187_500_000)
    expect(parseRate('4096')).toBe(4096)
    expect(parseRate(undefined)).toBe(0)
    expect(() => parseRate('50MiB/s', '--upload-rate')).toThrow(/--upload-rate "50MiB\/s" must look like 200mbit/)
  })

  it('takes the flags (or config keys) first, then the environment', () => {
    const env = { VMESH_UPLOAD_RATE: '80mbit', VMESH_DOWNLOAD_RATE: '40mbit' }
    expect(rateLimitsOf({}, env)).toEqual({ uploadBytesPerS: 10_000_000, downloadBytesPerS: 5_000_000 })
    expect(rateLimitsOf({ uploadRate: '200mbit' }, env)).toEqual({ uploadBytesPerS: 25_000_000, downloadBytesPerS: 5_000_000 })
    expect(rateLimitsOf({}, {})).toEqual({ uploadBytesPerS: 0, downloadBytesPerS: 0 })
    expect(() => rateLimitsOf({ downloadRate: 'fast' }, env)).toThrow(/--download-rate "fast"/)
  })
})
