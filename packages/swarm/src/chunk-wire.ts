// Chunk requests and replies on a bulk channel. The channel is a byte stream, so each message is a
// varint-length-prefixed protobuf frame (the framing of @vmesh/wire); a reply header is followed by
// the chunk's raw bytes, which are never copied through protobuf. The peer is authenticated, but
// its frames are still bounded and checked: a bug or a compromised member must not crash us.
import { encodeFrame, FrameDecoder, pb } from '@vmesh/wire'
import { pieceCount } from '@vmesh/store'
import { SwarmProtocolError, swarmLimits, checkIndices } from './swarm-protocol.js'

export function encodeRequest (indices: number[], fresh = 0): Uint8Array {
  return encodeFrame(pb.ChunkRequest.encode({ indices, fresh }).finish())
}

export function encodeReplyHeader (index: number, size: number, missing: boolean, none = false, pieceHashes: Uint8Array[] = []): Uint8Array {
  return encodeFrame(pb.ChunkReplyHeader.encode({ index, size, missing, none, pieceHashes }).finish())
}

export interface ParsedRequest {
  indices: number[]
  fresh: number
}

/** Parses request frames arriving in pieces; yields the requested indices, checked against count. */
export class RequestParser {
  private readonly decoder = new FrameDecoder(swarmLimits.bulkFrameBytes)

  constructor (private readonly count: number) {}

  push (piece: Uint8Array): ParsedRequest[] {
    let frames: Uint8Array[]
    try {
      frames = this.decoder.push(piece)
    } catch (err) {
      throw new SwarmProtocolError('bulk_frame', (err as Error).message)
    }
    return frames.map((f) => {
      let r
      try {
        r = pb.ChunkRequest.decode(f)
      } catch (err) {
        throw new SwarmProtocolError('bulk_request', `malformed chunk request: ${(err as Error).message}`)
      }
      const fresh = r.fresh ?? 0
      if (fresh > swarmLimits.maxRequestIndices) throw new SwarmProtocolError('bulk_request', `chunk request asks for ${fresh} fresh chunks; ${swarmLimits.maxRequestIndices} allowed`)
      return { indices: checkIndices(r.indices ?? [], this.count, swarmLimits.maxRequestIndices, 'chunk request'), fresh }
    })
  }

  get pendingBytes (): number {
    return this.decoder.pendingBytes
  }
}

/** A queue of received pieces that hands out exact byte counts, copying only across pieces. */
class ByteQueue {
  private pieces: Buffer[] = []
  private offset = 0
  length = 0

  push (b: Buffer): void {
    if (b.length === 0) return
    this.pieces.push(b)
    this.length += b.length
  }

  peek (i: number): number | undefined {
    if (i >= this.length) return undefined
    let at = this.offset + i
    for (const p of this.pieces) {
      if (at < p.length) return p[at]
      at -= p.length
    }
    return undefined
  }

  /** Up to n bytes from the front without copying (at most what the first piece holds). */
  takeSome (n: number): Buffer {
    const first = this.pieces[0] as Buffer
    const k = Math.min(n, first.length - this.offset)
    return this.take(k)
  }

  take (n: number): Buffer {
    const first = this.pieces[0]
    if (first !== undefined && first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n)
      this.offset += n
      if (this.offset === first.length) { this.pieces.shift(); this.offset = 0 }
      this.length -= n
      return out
    }
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    while (filled < n) {
      const p = this.pieces[0] as Buffer
      const k = Math.min(n - filled, p.length - this.offset)
      p.copy(out, filled, this.offset, this.offset + k)
      filled += k
      this.offset += k
      if (this.offset === p.length) { this.pieces.shift(); this.offset = 0 }
    }
    this.length -= n
    return out
  }
}

/** One step of a reply stream: a header, then (unless missing or none) its chunk's bytes in parts. */
export type ReplyPart =
  | { kind: 'header', index: number, size: number, missing: boolean, none: boolean, pieceHashes: Uint8Array[] }
  | { kind: 'body', data: Buffer, last: boolean }

/**
 * Reads reply headers and chunk bytes from a bulk channel as they arrive, without waiting for a
 * whole chunk (a relay may pass verified pieces on at once: partial-chunks.ts). A chunk larger
 * than maxChunkBytes, a malformed header, or a channel that ends in the middle of a reply throws
 * SwarmProtocolError.
 */
export async function * readReplyParts (source: AsyncIterable<Buffer>, maxChunkBytes: number): AsyncGenerator<ReplyPart> {
  const q = new ByteQueue()
  /** Body bytes still to come of the current reply. */
  let remaining = 0
  for await (const piece of source) {
    q.push(piece)
    for (;;) {
      if (remaining > 0) {
        if (q.length === 0) break
        const data = q.takeSome(remaining)
        remaining -= data.length
        yield { kind: 'body', data, last: remaining === 0 }
        continue
      }
      // varint length of the header frame
      let len = 0
      let scale = 1
      let used = 0
      let complete = false
      for (; used < 5; used++) {
        const b = q.peek(used)
        if (b === undefined) break
        len += (b & 0x7f) * scale
        scale *= 128
        if ((b & 0x80) === 0) { complete = true; used++; break }
      }
      if (!complete) {
        if (used >= 5) throw new SwarmProtocolError('bulk_frame', 'reply header length prefix is too long')
        break
      }
      if (len > swarmLimits.bulkFrameBytes) throw new SwarmProtocolError('bulk_frame', `reply header of ${len} bytes exceeds ${swarmLimits.bulkFrameBytes}`)
      if (q.length < used + len) break
      q.take(used)
      const raw = q.take(len)
      let h
      try {
        h = pb.ChunkReplyHeader.decode(raw)
      } catch (err) {
        throw new SwarmProtocolError('bulk_reply', `malformed reply header: ${(err as Error).message}`)
      }
      if (h.missing || h.none) {
        if (h.size !== 0) throw new SwarmProtocolError('bulk_reply', 'a missing chunk reply carries bytes')
      } else if (h.size === 0 || h.size > maxChunkBytes) {
        throw new SwarmProtocolError('bulk_reply', `reply of ${h.size} bytes for chunk ${h.index}; chunks here hold 1..${maxChunkBytes}`)
      }
      const given = h.pieceHashes ?? []
      if (given.length > 0 && (given.length !== pieceCount(h.size) || given.some((d) => d.byteLength !== 32))) {
        throw new SwarmProtocolError('bulk_reply', `reply for chunk ${h.index} of ${h.size} bytes gives ${given.length} piece hashes; it has ${pieceCount(h.size)} pieces of 32-byte hashes`)
      }
      // Decoded bytes are views of the record they came in (chunk bytes too): copy them out, so
      // hashes kept for later do not keep records alive.
      const copy = given.length > 0 ? Buffer.concat(given) : undefined
      const pieceHashes = given.map((_, k) => (copy as Buffer).subarray(k * 32, (k + 1) * 32))
      remaining = h.size
      yield { kind: 'header', index: h.index, size: h.size, missing: h.missing, none: h.none, pieceHashes }
    }
  }
  if (remaining > 0 || q.length > 0) throw new SwarmProtocolError('bulk_truncated', 'bulk channel ended in the middle of a chunk reply')
}
