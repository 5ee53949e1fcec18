// Pieces: a chunk is also hashed in PIECE_SIZE pieces, so that a host receiving it can check its
// first pieces and pass them on before the rest has arrived (the swarm's cut-through forwarding).
// A manifest records, per stored chunk, a pieces digest: SHA-256 over the 32-byte SHA-256 of each
// piece in order (the last piece may be shorter). A transfer carries the piece hashes themselves,
// and the receiver checks them against the digest before it trusts any of them. The chunk's own
// hash (SHA-256 of its bytes) stays its name and is still checked once the whole chunk is in.
import { createHash } from 'node:crypto'
import { HASH_BYTES, type Hash } from './hash.js'

/** Bytes per piece: the swarm's bulk record size, so a record that arrives completes a piece. */
export const PIECE_SIZE = 256 << 10

/** Whether chunks of this size are described by pieces (a chunk of one piece gains nothing). */
export function hasPieces (chunkSize: number): boolean {
  return chunkSize > PIECE_SIZE
}

export function pieceCount (length: number): number {
  return Math.ceil(length / PIECE_SIZE)
}

/** SHA-256 (32 bytes) of each piece of a chunk, in order. */
export function pieceHashes (bytes: Uint8Array): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < bytes.byteLength; at += PIECE_SIZE) {
    out.push(createHash('sha256').update(bytes.subarray(at, Math.min(at + PIECE_SIZE, bytes.byteLength))).digest())
  }
  return out
}

/** The pieces digest of a chunk from its piece hashes. */
export function piecesDigest (hashes: readonly Uint8Array[]): Hash {
  const h = createHash('sha256')
  for (const d of hashes) {
    if (d.byteLength !== HASH_BYTES) throw new RangeError(`a piece hash has ${d.byteLength} bytes, not ${HASH_BYTES}`)
    h.update(d)
  }
  return h.digest('hex')
}

/** The pieces digest of a chunk from its bytes. */
export function chunkPiecesDigest (bytes: Uint8Array): Hash {
  return piecesDigest(pieceHashes(bytes))
}
