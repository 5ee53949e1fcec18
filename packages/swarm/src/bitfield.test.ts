import { describe, expect, it } from 'vitest'
import { Bitfield, BitfieldError } from './bitfield.js'

describe('Bitfield (have-maps)', () => {
  it('sets, clears and counts; encodes least significant bit first', () => {
    const b = new Bitfield(10)
    expect(b.set(0)).toBe(true)
    expect(b.set(0)).toBe(false)
    b.set(9)
    expect(b.size).toBe(2)
    expect([...b.indices()]).toEqual([0, 9])
    expect([...b.encode()]).toEqual([0b00000001, 0b00000010])
    expect(b.clear(0)).toBe(true)
    expect(b.size).toBe(1)
    expect(() => b.set(10)).toThrow(RangeError)
    expect(b.has(-1)).toBe(false)
  })

  it('round-trips and knows when it is full', () => {
    const b = Bitfield.from(17, Array.from({ length: 17 }, (_, i) => i))
    expect(b.full).toBe(true)
    const d = Bitfield.decode(b.encode(), 17)
    expect(d.size).toBe(17)
    expect(new Bitfield(0).full).toBe(true)
  })

  it('rejects a wrong length or bits beyond the last chunk', () => {
    expect(() => Bitfield.decode(new Uint8Array(3), 17)).not.toThrow()
    expect(() => Bitfield.decode(new Uint8Array(2), 17)).toThrow(BitfieldError)
    expect(() => Bitfield.decode(new Uint8Array(4), 17)).toThrow(BitfieldError)
    expect(() => Bitfield.decode(new Uint8Array([0, 0, 0b10]), 17)).toThrow(/beyond the last chunk/)
  })
})
