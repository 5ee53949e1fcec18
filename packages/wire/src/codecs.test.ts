import { describe, it, expect } from 'vitest'
import { pb } from './codecs.js'

describe('generated codecs', () => {
  it('decode 64-bit fields as plain numbers, absent ones as 0', () => {
    const empty = pb.Member.decode(new Uint8Array())
    expect(empty.incarnation).toBe(0)
    expect(typeof empty.lastAdvertAgeMs).toBe('number')
    const m = pb.Member.decode(pb.Member.encode({ incarnation: 2 ** 40 + 7 }).finish())
    expect(m.incarnation).toBe(2 ** 40 + 7)
  })
})
