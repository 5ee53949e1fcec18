// A have-map: one bit per chunk of a manifest (its distinct stored chunks in first-use order).
// The encoding is the one proto/swarm.proto documents; decode() checks it strictly because the
// bytes come from the network.

export class BitfieldError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'BitfieldError'
  }
}

export class Bitfield {
  readonly bytes: Uint8Array
  private ones = 0

  constructor (readonly count: number) {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`bitfield size must be a non-negative integer, got ${count}`)
    this.bytes = new Uint8Array(Math.ceil(count / 8))
  }

  /** Strictly decodes an encoded bitfield of `count` bits: exact length, unused bits zero. */
  static decode (bytes: Uint8Array, count: number): Bitfield {
    const b = new Bitfield(count)
    if (bytes.length !== b.bytes.length) throw new BitfieldError(`have-map of ${bytes.length} bytes does not fit ${count} chunks (needs ${b.bytes.length})`)
    b.bytes.set(bytes)
    const spare = count % 8
    if (spare !== 0 && ((b.bytes[b.bytes.length - 1] as number) >> spare) !== 0) throw new BitfieldError('have-map sets bits beyond the last chunk')
    let ones = 0
    for (const byte of b.bytes) ones += popcount(byte)
    b.ones = ones
    return b
  }

  static from (count: number, indices: Iterable<number>): Bitfield {
    const b = new Bitfield(count)
    for (const i of indices) b.set(i)
    return b
  }

  get size (): number {
    return this.ones
  }

  get full (): boolean {
    return this.ones === this.count
  }

  has (i: number): boolean {
    if (i < 0 || i >= this.count) return false
    return (((this.bytes[i >> 3] as number) >> (i & 7)) & 1) === 1
  }

  /** Sets bit i; returns whether it was newly set. */
  set (i: number): boolean {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`chunk index ${i} is outside 0..${this.count - 1}`)
    const byte = this.bytes[i >> 3] as number
    const mask = 1 << (i & 7)
    if ((byte & mask) !== 0) return false
    this.bytes[i >> 3] = byte | mask
    this.ones++
    return true
  }

  clear (i: number): boolean {
    if (!this.has(i)) return false
    this.bytes[i >> 3] = (this.bytes[i >> 3] as number) & ~(1 << (i & 7))
    this.ones--
    return true
  }

  * indices (): Generator<number> {
    for (let i = 0; i < this.count; i++) if (this.has(i)) yield i
  }

  encode (): Uint8Array {
    return this.bytes.slice()
  }
}

function popcount (byte: number): number {
  let n = 0
  for (let b = byte; b !== 0; b &= b - 1) n++
  return n
}
