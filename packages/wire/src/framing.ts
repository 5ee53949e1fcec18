// Length-prefixed framing (unsigned LEB128 varint length, then the bytes), the same layout
// libp2p's lpStream uses, so a frame looks alike on a unix socket and on a libp2p stream.

/** Longest varint we accept for a length: 5 bytes cover 2^35, far above any frame limit. */
const MAX_VARINT_BYTES = 5

export class FrameTooLargeError extends Error {
  constructor (readonly length: number, readonly limit: number) {
    super(`frame of ${length} bytes exceeds the limit of ${limit} bytes`)
    this.name = 'FrameTooLargeError'
  }
}

export class MalformedFrameError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MalformedFrameError'
  }
}

export function encodeFrame (payload: Uint8Array): Uint8Array {
  const header: number[] = []
  let n = payload.length
  do {
    let byte = n & 0x7f
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    header.push(byte)
  } while (n > 0)
  const out = new Uint8Array(header.length + payload.length)
  out.set(header, 0)
  out.set(payload, header.length)
  return out
}

/** Incremental decoder: push bytes as they arrive, get whole frames back. */
export class FrameDecoder {
  private buffer: Uint8Array = new Uint8Array(0)

  constructor (private readonly maxFrameBytes: number) {}

  get pendingBytes (): number {
    return this.buffer.length
  }

  push (chunk: Uint8Array): Uint8Array[] {
    this.buffer = this.buffer.length === 0 ? chunk : concat(this.buffer, chunk)
    const frames: Uint8Array[] = []
    for (;;) {
      const header = readVarint(this.buffer)
      if (header === undefined) break
      const { value: length, bytes } = header
      if (length > this.maxFrameBytes) throw new FrameTooLargeError(length, this.maxFrameBytes)
      if (this.buffer.length < bytes + length) break
      frames.push(this.buffer.slice(bytes, bytes + length))
      this.buffer = this.buffer.subarray(bytes + length)
    }
    return frames
  }
}

function readVarint (buf: Uint8Array): { value: number, bytes: number } | undefined {
  let value = 0
  let scale = 1
  for (let i = 0; i < buf.length; i++) {
    if (i >= MAX_VARINT_BYTES) throw new MalformedFrameError('frame length prefix is too long')
    const byte = buf[i] as number
    value += (byte & 0x7f) * scale
    if ((byte & 0x80) === 0) return { value, bytes: i + 1 }
    scale *= 128
  }
  if (buf.length >= MAX_VARINT_BYTES) throw new MalformedFrameError('frame length prefix is too long')
  return undefined
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}
