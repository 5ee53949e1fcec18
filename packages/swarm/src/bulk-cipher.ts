// Sealed records of the bulk data plane, and the keys they are sealed with.
//
// A record on the wire is
//   header (4 bytes, big endian): bit 31 = final record, bits 0-30 = plaintext length L
//   ciphertext (L bytes), AES-256-GCM
//   tag (16 bytes)
// The header is the GCM additional data, so a changed length or final bit fails authentication.
// The nonce is never sent: it is the record's index in its direction (96 bits, big endian), so a
// replayed, dropped or reordered record fails authentication too. Each direction has its own key,
// so the two directions never share a (key, nonce) pair. A stream must end with a record that has
// the final bit: a connection cut at a record boundary is then still detected as truncated.
import { createCipheriv, createDecipheriv, hkdfSync, type DecipherGCM } from 'node:crypto'

export const RECORD_HEADER_BYTES = 4
export const RECORD_TAG_BYTES = 16
export const BULK_KEY_BYTES = 32
export const BULK_SECRET_BYTES = 32
export const BULK_TICKET_BYTES = 16
/** Hard ceiling for any configured record size: the length field has 31 bits, we allow 16 MiB. */
export const RECORD_LIMIT_BYTES = 16 * 1024 * 1024
const FINAL_BIT = 0x80000000
const LENGTH_MASK = 0x7fffffff
const HKDF_LABEL = 'vmesh/bulk/1'

/** Base class of every way a peer can break the record protocol. */
export class BulkProtocolError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'BulkProtocolError'
  }
}

export class RecordTooLargeError extends BulkProtocolError {
  constructor (readonly length: number, readonly limit: number) {
    super(`bulk record of ${length} bytes exceeds the limit of ${limit} bytes; the peer is misconfigured or hostile`)
    this.name = 'RecordTooLargeError'
  }
}

export class RecordAuthError extends BulkProtocolError {
  constructor (readonly index: number) {
    super(`bulk record ${index} failed authentication (tampered, replayed, reordered or wrong key); connection dropped`)
    this.name = 'RecordAuthError'
  }
}

export class TruncatedStreamError extends BulkProtocolError {
  constructor (detail: string) {
    super(`bulk stream ended before its final record (${detail}); the data is incomplete`)
    this.name = 'TruncatedStreamError'
  }
}

/** The two keys of one end of a channel. */
export interface BulkKeys {
  send: Uint8Array
  receive: Uint8Array
}

export interface BulkKeyInput {
  secret: Uint8Array
  ticket: Uint8Array
  /** Peer id (string form) of the side that made the offer and listens. */
  offerer: string
  /** Peer id (string form) of the side that accepted the offer and dials. */
  accepter: string
}

/**
 * HKDF-SHA256 from the session secret; the info binds both peer ids and the ticket, so keys made
 * for one pair of peers and one offer are useless for any other.
 */
export function deriveBulkKeys (input: BulkKeyInput, role: 'offerer' | 'accepter'): BulkKeys {
  if (input.secret.length !== BULK_SECRET_BYTES) throw new Error(`bulk secret must be ${BULK_SECRET_BYTES} bytes, got ${input.secret.length}`)
  if (input.ticket.length !== BULK_TICKET_BYTES) throw new Error(`bulk ticket must be ${BULK_TICKET_BYTES} bytes, got ${input.ticket.length}`)
  const field = (b: Uint8Array): Buffer => {
    const len = Buffer.alloc(2)
    len.writeUInt16BE(b.length)
    return Buffer.concat([len, b])
  }
  const info = Buffer.concat([
    Buffer.from(HKDF_LABEL),
    field(Buffer.from(input.offerer)),
    field(Buffer.from(input.accepter)),
    field(input.ticket)
  ])
  const okm = Buffer.from(hkdfSync('sha256', input.secret, Buffer.alloc(0), info, 2 * BULK_KEY_BYTES))
  const offererToAccepter = okm.subarray(0, BULK_KEY_BYTES)
  const accepterToOfferer = okm.subarray(BULK_KEY_BYTES)
  return role === 'offerer'
    ? { send: offererToAccepter, receive: accepterToOfferer }
    : { send: accepterToOfferer, receive: offererToAccepter }
}

/** 96-bit nonce holding the record index; indexes stay below 2^53 (a record per ns for 100 days). */
function nonce (index: number): Buffer {
  const iv = Buffer.alloc(12)
  iv.writeUInt32BE(Math.floor(index / 0x100000000), 4)
  iv.writeUInt32BE(index >>> 0, 8)
  return iv
}

/** Seals the records of one direction, in order. */
export class RecordSealer {
  /** Index of the next record, which is also its nonce. */
  private index = 0

  constructor (private readonly key: Uint8Array) {
    if (key.length !== BULK_KEY_BYTES) throw new Error(`bulk key must be ${BULK_KEY_BYTES} bytes`)
  }

  get recordsSealed (): number {
    return this.index
  }

  /**
   * Returns the record as three buffers (header, ciphertext, tag) to hand to a corked socket,
   * which writes them with one writev: joining them would copy every byte once more.
   */
  seal (plaintext: Uint8Array, final = false): [Buffer, Buffer, Buffer] {
    if (plaintext.length > RECORD_LIMIT_BYTES) throw new RecordTooLargeError(plaintext.length, RECORD_LIMIT_BYTES)
    const header = Buffer.alloc(RECORD_HEADER_BYTES)
    header.writeUInt32BE((plaintext.length | (final ? FINAL_BIT : 0)) >>> 0)
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(this.index++))
    cipher.setAAD(header)
    const body = plaintext.length === 0 ? Buffer.alloc(0) : cipher.update(plaintext)
    cipher.final()
    return [header, body, cipher.getAuthTag()]
  }
}

/** One authenticated record: its plaintext (possibly in several pieces) and whether it ends the stream. */
export interface OpenedRecord {
  pieces: Buffer[]
  bytes: number
  final: boolean
}

type Phase = 'header' | 'body' | 'tag' | 'done'

/**
 * Opens the records of one direction from bytes as they arrive. Ciphertext is decrypted piece by
 * piece as it comes in (no reassembly copy), but nothing is released before the record's tag has
 * been verified.
 */
export class RecordOpener {
  private index = 0
  private phase: Phase = 'header'
  /** Partial header or tag bytes carried over between pushes. */
  private small: Buffer = Buffer.alloc(0)
  private length = 0
  private final = false
  private remaining = 0
  private decipher: DecipherGCM | undefined
  private pieces: Buffer[] = []

  constructor (private readonly key: Uint8Array, private readonly maxRecordBytes: number) {
    if (key.length !== BULK_KEY_BYTES) throw new Error(`bulk key must be ${BULK_KEY_BYTES} bytes`)
    if (maxRecordBytes < 1 || maxRecordBytes > RECORD_LIMIT_BYTES) throw new Error(`maxRecordBytes must be 1..${RECORD_LIMIT_BYTES}`)
  }

  /** True once the final record has been opened. */
  get finished (): boolean {
    return this.phase === 'done'
  }

  get recordsOpened (): number {
    return this.index
  }

  /** Bytes received but not yet part of an authenticated record. */
  get pendingBytes (): number {
    if (this.phase === 'body') return this.length - this.remaining + this.small.length
    if (this.phase === 'tag') return this.length + this.small.length
    return this.small.length
  }

  /** Feeds received bytes; returns the records they complete. Throws a BulkProtocolError on any violation. */
  push (chunk: Buffer): OpenedRecord[] {
    const out: OpenedRecord[] = []
    let at = 0
    while (at < chunk.length) {
      if (this.phase === 'done') throw new BulkProtocolError(`${chunk.length - at} bytes arrived after the final bulk record`)
      if (this.phase === 'header' || this.phase === 'tag') {
        const need = (this.phase === 'header' ? RECORD_HEADER_BYTES : RECORD_TAG_BYTES) - this.small.length
        const take = Math.min(need, chunk.length - at)
        const part = chunk.subarray(at, at + take)
        at += take
        const whole = this.small.length === 0 && take === need ? part : Buffer.concat([this.small, part])
        if (take < need) { this.small = Buffer.from(whole); continue }
        this.small = Buffer.alloc(0)
        if (this.phase === 'header') this.startRecord(whole)
        else out.push(this.finishRecord(whole))
        if ((this.phase as Phase) === 'body' && this.remaining === 0) this.phase = 'tag'
        continue
      }
      // body
      const take = Math.min(this.remaining, chunk.length - at)
      this.pieces.push((this.decipher as DecipherGCM).update(chunk.subarray(at, at + take)))
      at += take
      this.remaining -= take
      if (this.remaining === 0) this.phase = 'tag'
    }
    return out
  }

  /** The peer closed the connection: throws unless the stream ended with its final record. */
  end (): void {
    if (this.phase === 'done') return
    const detail = this.pendingBytes > 0 ? `${this.pendingBytes} bytes of record ${this.index} missing their end` : `no final record after ${this.index} records`
    throw new TruncatedStreamError(detail)
  }

  private startRecord (header: Buffer): void {
    const word = header.readUInt32BE(0)
    this.length = word & LENGTH_MASK
    this.final = (word & FINAL_BIT) !== 0
    if (this.length > this.maxRecordBytes) throw new RecordTooLargeError(this.length, this.maxRecordBytes)
    this.decipher = createDecipheriv('aes-256-gcm', this.key, nonce(this.index))
    this.decipher.setAAD(header)
    this.remaining = this.length
    this.pieces = []
    this.phase = 'body'
  }

  private finishRecord (tag: Buffer): OpenedRecord {
    const decipher = this.decipher as DecipherGCM
    decipher.setAuthTag(tag)
    try {
      decipher.final()
    } catch {
      throw new RecordAuthError(this.index)
    }
    this.index++
    const record: OpenedRecord = { pieces: this.pieces, bytes: this.length, final: this.final }
    this.pieces = []
    this.decipher = undefined
    this.phase = this.final ? 'done' : 'header'
    return record
  }
}
