// The small message that keys a bulk channel. It travels over a channel that is already
// encrypted and mutually authenticated (a Noise libp2p stream), so the secret inside it is known
// only to the two peers; the bulk channel needs nothing else from libp2p.
import { randomBytes } from 'node:crypto'
import { pb } from '@vmesh/wire'
import { BULK_SECRET_BYTES, BULK_TICKET_BYTES, RECORD_LIMIT_BYTES, deriveBulkKeys } from './bulk-cipher.js'
import { DEFAULT_BULK_OPTIONS, dialBulkChannel, type BulkChannel, type BulkChannelOptions } from './bulk-channel.js'
import type { BulkListener } from './bulk-listener.js'

export const BULK_OFFER_VERSION = 1
/** An encoded offer is ~100 bytes; anything much larger is not one. */
export const MAX_BULK_OFFER_BYTES = 1024
const MAX_TTL_MS = 5 * 60_000

export interface CreateBulkOfferOptions {
  /** Peer id (string) of this side, which listens. */
  localPeer: string
  /** Peer id (string) of the peer the offer is for, as authenticated by the libp2p connection. */
  remotePeer: string
  /** Address to put in the offer, when the listener's own (e.g. 0.0.0.0) is not what the peer should dial. */
  host?: string
  /** How long the peer has to connect. */
  ttlMs?: number
}

export interface BulkOfferHandle {
  /** The encoded BulkOffer to send to remotePeer over the authenticated stream. */
  offer: Uint8Array
  /** Resolves with the channel once remotePeer has connected and proved the key. */
  channel: Promise<BulkChannel>
}

/** Makes a fresh secret and ticket, registers the ticket with the listener, encodes the offer. */
export function createBulkOffer (listener: BulkListener, opts: CreateBulkOfferOptions): BulkOfferHandle {
  const ttlMs = opts.ttlMs ?? 15_000
  if (!(ttlMs > 0 && ttlMs <= MAX_TTL_MS)) throw new Error(`bulk offer ttlMs must be 1..${MAX_TTL_MS}, got ${ttlMs}`)
  const secret = randomBytes(BULK_SECRET_BYTES)
  const ticket = randomBytes(BULK_TICKET_BYTES)
  const address = listener.address
  const host = opts.host ?? address.host
  const keys = deriveBulkKeys({ secret, ticket, offerer: opts.localPeer, accepter: opts.remotePeer }, 'offerer')
  const channel = listener.expect(ticket, keys, ttlMs)
  // The caller may never await it (e.g. sending the offer failed); the rejection is theirs to see.
  channel.catch(() => {})
  const offer = pb.BulkOffer.encode({
    version: BULK_OFFER_VERSION,
    secret,
    ticket,
    host,
    port: address.port,
    maxRecordBytes: listener.options.maxRecordBytes,
    ttlMs
  }).finish()
  return { offer, channel }
}

export interface AcceptBulkOfferOptions extends Partial<Omit<BulkChannelOptions, 'maxRecordBytes'>> {
  /** Peer id (string) of this side, which dials. */
  localPeer: string
  /** Peer id (string) of the peer that sent the offer, as authenticated by the libp2p connection. */
  remotePeer: string
  /** Dial this host instead of the one in the offer (e.g. the address the libp2p connection uses). */
  host?: string
  timeoutMs?: number
}

export interface DecodedBulkOffer {
  secret: Uint8Array
  ticket: Uint8Array
  host: string
  port: number
  maxRecordBytes: number
  ttlMs: number
}

/** Decodes and checks an offer received from the network; throws a sentence on anything malformed. */
export function decodeBulkOffer (bytes: Uint8Array): DecodedBulkOffer {
  if (bytes.length > MAX_BULK_OFFER_BYTES) throw new Error(`bulk offer of ${bytes.length} bytes exceeds ${MAX_BULK_OFFER_BYTES}; not an offer`)
  let m: InstanceType<typeof pb.BulkOffer>
  try {
    m = pb.BulkOffer.decode(bytes)
  } catch (err) {
    throw new Error(`malformed bulk offer: ${(err as Error).message}`)
  }
  if (m.version !== BULK_OFFER_VERSION) throw new Error(`bulk offer version ${m.version} is not supported (this agent speaks ${BULK_OFFER_VERSION}); upgrade the older agent`)
  if (m.secret.length !== BULK_SECRET_BYTES) throw new Error(`bulk offer secret must be ${BULK_SECRET_BYTES} bytes, got ${m.secret.length}`)
  if (m.ticket.length !== BULK_TICKET_BYTES) throw new Error(`bulk offer ticket must be ${BULK_TICKET_BYTES} bytes, got ${m.ticket.length}`)
  if (m.host.length === 0 || m.host.length > 255) throw new Error('bulk offer host must be 1..255 characters')
  if (!(m.port >= 1 && m.port <= 65535)) throw new Error(`bulk offer port ${m.port} is out of range`)
  if (!(m.maxRecordBytes >= 1 && m.maxRecordBytes <= RECORD_LIMIT_BYTES)) throw new Error(`bulk offer max record size ${m.maxRecordBytes} is out of range 1..${RECORD_LIMIT_BYTES}`)
  if (!(m.ttlMs >= 1 && m.ttlMs <= MAX_TTL_MS)) throw new Error(`bulk offer ttl ${m.ttlMs} ms is out of range`)
  return { secret: m.secret, ticket: m.ticket, host: m.host, port: m.port, maxRecordBytes: m.maxRecordBytes, ttlMs: m.ttlMs }
}

/** Derives the keys from an offer and dials the offerer's listener. */
export async function acceptBulkOffer (bytes: Uint8Array, opts: AcceptBulkOfferOptions): Promise<BulkChannel> {
  const o = decodeBulkOffer(bytes)
  const keys = deriveBulkKeys({ secret: o.secret, ticket: o.ticket, offerer: opts.remotePeer, accepter: opts.localPeer }, 'accepter')
  return await dialBulkChannel({
    ...opts,
    recordBytes: Math.min(opts.recordBytes ?? DEFAULT_BULK_OPTIONS.recordBytes, o.maxRecordBytes),
    maxRecordBytes: o.maxRecordBytes,
    host: opts.host ?? o.host,
    port: o.port,
    ticket: o.ticket,
    keys,
    timeoutMs: opts.timeoutMs ?? Math.min(o.ttlMs, 10_000)
  })
}
