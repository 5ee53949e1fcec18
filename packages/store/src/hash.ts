// Chunk and manifest hashes. In the public API a hash is a lowercase hex string of a SHA-256
// digest (64 characters): it is what names chunk files, keys Maps and reads well in logs. Bytes
// appear only inside the protobuf encoding (32 bytes).
import { createHash } from 'node:crypto'

/** SHA-256 digest as 64 lowercase hex characters. */
export type Hash = string

export const HASH_BYTES = 32
const HASH_RE = /^[0-9a-f]{64}$/

export function isHash (value: unknown): value is Hash {
  return typeof value === 'string' && HASH_RE.test(value)
}

export function assertHash (value: unknown, what = 'hash'): asserts value is Hash {
  if (!isHash(value)) throw new TypeError(`${what} must be 64 lowercase hex characters (SHA-256), got ${JSON.stringify(String(value).slice(0, 80))}`)
}

export function sha256 (bytes: Uint8Array): Hash {
  return createHash('sha256').update(bytes).digest('hex')
}

export function sha256Bytes (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

export function hashToBytes (hash: Hash): Uint8Array {
  return new Uint8Array(Buffer.from(hash, 'hex'))
}

export function bytesToHash (bytes: Uint8Array): Hash {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

const zeroHashCache = new Map<number, Buffer>()

/** SHA-256 of `length` zero bytes (used for zero chunks in layer hashes), cached per length. */
export function zeroChunkDigest (length: number): Buffer {
  let d = zeroHashCache.get(length)
  if (d === undefined) {
    d = sha256Bytes(new Uint8Array(length))
    if (zeroHashCache.size > 64) zeroHashCache.clear()
    zeroHashCache.set(length, d)
  }
  return d
}

/** True when every byte is zero. Compares against a shared zero buffer (a memcmp, ~10+ GB/s). */
export function isAllZero (bytes: Uint8Array): boolean {
  let zeros = sharedZeros
  if (zeros.byteLength < bytes.byteLength) zeros = sharedZeros = Buffer.alloc(bytes.byteLength)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(zeros.subarray(0, bytes.byteLength))
}
let sharedZeros = Buffer.alloc(1 << 20)
