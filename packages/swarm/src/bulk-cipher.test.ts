import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import {
  deriveBulkKeys, RecordAuthError, RecordOpener, RecordSealer, RecordTooLargeError, TruncatedStreamError, BulkProtocolError, type OpenedRecord
} from './bulk-cipher.js'

const secret = randomBytes(32)
const ticket = randomBytes(16)
const offerer = deriveBulkKeys({ secret, ticket, offerer: 'peerA', accepter: 'peerB' }, 'offerer')
const accepter = deriveBulkKeys({ secret, ticket, offerer: 'peerA', accepter: 'peerB' }, 'accepter')

function sealAll (sealer: RecordSealer, records: Buffer[], finalLast = true): Buffer {
  return Buffer.concat(records.flatMap((r, i) => sealer.seal(r, finalLast && i === records.length - 1)))
}

function plaintext (opened: OpenedRecord[]): Buffer {
  return Buffer.concat(opened.flatMap((r) => r.pieces))
}

describe('deriveBulkKeys', () => {
  it('gives each direction its own key, mirrored between the two ends', () => {
    expect(Buffer.from(offerer.send)).toEqual(Buffer.from(accepter.receive))
    expect(Buffer.from(offerer.receive)).toEqual(Buffer.from(accepter.send))
    expect(Buffer.from(offerer.send)).not.toEqual(Buffer.from(offerer.receive))
  })

  it('binds the keys to both peer ids and the ticket', () => {
    const other = deriveBulkKeys({ secret, ticket, offerer: 'peerA', accepter: 'peerC' }, 'offerer')
    const swapped = deriveBulkKeys({ secret, ticket, offerer: 'peerB', accepter: 'peerA' }, 'offerer')
    const otherTicket = deriveBulkKeys({ secret, ticket: randomBytes(16), offerer: 'peerA', accepter: 'peerB' }, 'offerer')
    for (const k of [other, swapped, otherTicket]) expect(Buffer.from(k.send)).not.toEqual(Buffer.from(offerer.send))
  })
})

describe('RecordSealer / RecordOpener', () => {
  it('round-trips records however the bytes are split', () => {
    const records = [randomBytes(1000), Buffer.alloc(0), randomBytes(70_000), randomBytes(3)]
    const wire = sealAll(new RecordSealer(offerer.send), records)
    for (const step of [3, 7, 4096, wire.length]) {
      const opener = new RecordOpener(accepter.receive, 1 << 20)
      const opened: OpenedRecord[] = []
      for (let at = 0; at < wire.length; at += step) opened.push(...opener.push(wire.subarray(at, at + step)))
      expect(opened.map((r) => r.bytes)).toEqual(records.map((r) => r.length))
      expect(plaintext(opened)).toEqual(Buffer.concat(records))
      expect(opener.finished).toBe(true)
      expect(() => opener.end()).not.toThrow()
    }
  })

  it('rejects a record whose ciphertext, tag or header was changed', () => {
    const wire = sealAll(new RecordSealer(offerer.send), [randomBytes(500)])
    for (const at of [0, 3, 4, 200, wire.length - 1]) {
      const bad = Buffer.from(wire)
      bad[at] = (bad[at] as number) ^ 0x01
      const opener = new RecordOpener(accepter.receive, 1 << 20)
      // A changed length may first read as "wait for more": it must then fail at the end.
      expect(() => { opener.push(bad); opener.end() }).toThrow(BulkProtocolError)
    }
    const bad = Buffer.from(wire)
    bad[100] = (bad[100] as number) ^ 0x80
    expect(() => new RecordOpener(accepter.receive, 1 << 20).push(bad)).toThrow(RecordAuthError)
  })

  it('rejects replayed and reordered records', () => {
    const sealer = new RecordSealer(offerer.send)
    const r0 = Buffer.concat(sealer.seal(randomBytes(100)))
    const r1 = Buffer.concat(sealer.seal(randomBytes(100)))
    expect(() => new RecordOpener(accepter.receive, 1 << 20).push(Buffer.concat([r0, r0]))).toThrow(RecordAuthError)
    expect(() => new RecordOpener(accepter.receive, 1 << 20).push(Buffer.concat([r1, r0]))).toThrow(RecordAuthError)
  })

  it('rejects records sealed with the other direction\'s key', () => {
    const wire = sealAll(new RecordSealer(accepter.send), [randomBytes(100)])
    expect(() => new RecordOpener(accepter.receive, 1 << 20).push(wire)).toThrow(RecordAuthError)
  })

  it('rejects an oversize record length from its header alone', () => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(64 * 1024 * 1024)
    const opener = new RecordOpener(accepter.receive, 1 << 20)
    expect(() => opener.push(header)).toThrow(RecordTooLargeError)
    const wire = sealAll(new RecordSealer(offerer.send), [randomBytes(2000)])
    expect(() => new RecordOpener(accepter.receive, 1000).push(wire)).toThrow(RecordTooLargeError)
  })

  it('detects a stream cut mid-record and one cut at a record boundary', () => {
    const sealer = new RecordSealer(offerer.send)
    const first = Buffer.concat(sealer.seal(randomBytes(300)))
    const last = Buffer.concat(sealer.seal(randomBytes(300), true))
    const midway = new RecordOpener(accepter.receive, 1 << 20)
    midway.push(Buffer.concat([first, last.subarray(0, 100)]))
    expect(() => midway.end()).toThrow(TruncatedStreamError)
    const boundary = new RecordOpener(accepter.receive, 1 << 20)
    expect(boundary.push(first)).toHaveLength(1)
    expect(() => boundary.end()).toThrow(TruncatedStreamError)
  })

  it('rejects bytes after the final record', () => {
    const sealer = new RecordSealer(offerer.send)
    const wire = Buffer.concat([...sealer.seal(randomBytes(10), true), Buffer.from('more')])
    expect(() => new RecordOpener(accepter.receive, 1 << 20).push(wire)).toThrow(/after the final/)
  })
})
