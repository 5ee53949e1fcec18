// The bulk channel keyed through a real libp2p stream: two nodes (TCP + pnet + Noise + Yamux) in
// one process; the offer travels over a custom protocol, then 64 MiB go over the bulk channel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import type { Libp2p } from 'libp2p'
import { generateKey } from '@libp2p/pnet'
import { createClientNode } from '@vmesh/mesh'
import { streamChannel } from '@vmesh/wire'
import { BulkListener } from './bulk-listener.js'
import { acceptBulkOffer, createBulkOffer, MAX_BULK_OFFER_BYTES } from './bulk-offer.js'

const PROTOCOL = '/vmesh/test/bulk-offer/1'
const SIZE = 64 * 1024 * 1024

async function node (psk: Uint8Array): Promise<Libp2p> {
  return await createClientNode(psk, ['/ip4/127.0.0.1/tcp/0'])
}

describe('bulk channel keyed over libp2p', () => {
  let source: Libp2p
  let target: Libp2p
  let listener: BulkListener

  beforeAll(async () => {
    const psk = new Uint8Array(95)
    generateKey(psk)
    source = await node(psk)
    target = await node(psk)
    listener = new BulkListener({ host: '127.0.0.1' })
    await listener.listen()
  })

  afterAll(async () => {
    await listener?.close()
    await source?.stop()
    await target?.stop()
  })

  it('sends the offer over a Noise stream and 64 MiB over the bulk channel, verified by SHA-256', async () => {
    const data = randomBytes(SIZE)
    const expected = createHash('sha256').update(data).digest('hex')
    const served: Array<Promise<void>> = []

    // The source answers each request with an offer bound to the authenticated remote peer id,
    // then pushes the data once that peer connects to the bulk listener.
    await source.handle(PROTOCOL, (stream, connection) => {
      served.push((async () => {
        const ch = streamChannel(stream, MAX_BULK_OFFER_BYTES)
        const { offer, channel } = createBulkOffer(listener, { localPeer: source.peerId.toString(), remotePeer: connection.remotePeer.toString() })
        await ch.send(offer)
        await ch.close()
        const bulk = await channel
        for (let at = 0; at < data.length; at += 4 << 20) await bulk.write(data.subarray(at, at + (4 << 20)))
        await bulk.end()
      })())
    })

    const stream = await target.dialProtocol(source.getMultiaddrs(), PROTOCOL)
    const ch = streamChannel(stream, MAX_BULK_OFFER_BYTES)
    const offer = await ch.recv(5000)
    expect(offer).toBeDefined()
    const bulk = await acceptBulkOffer(offer as Uint8Array, { localPeer: target.peerId.toString(), remotePeer: source.peerId.toString() })
    const hash = createHash('sha256')
    let bytes = 0
    for await (const piece of bulk) { hash.update(piece); bytes += piece.length }
    await bulk.end()
    await Promise.all(served)
    expect(bytes).toBe(SIZE)
    expect(hash.digest('hex')).toBe(expected)
    expect(listener.stats).toMatchObject({ accepted: 1, rejected: 0 })
  })

  it('an offer taken by a different peer id yields keys that the listener refuses', async () => {
    await source.handle(`${PROTOCOL}-2`, (stream, connection) => {
      void (async () => {
        const ch = streamChannel(stream, MAX_BULK_OFFER_BYTES)
        const { offer, channel } = createBulkOffer(listener, { localPeer: source.peerId.toString(), remotePeer: connection.remotePeer.toString(), ttlMs: 500 })
        await ch.send(offer)
        await ch.close()
        await channel.catch(() => {})
      })()
    })
    const stream = await target.dialProtocol(source.getMultiaddrs(), `${PROTOCOL}-2`)
    const offer = await streamChannel(stream, MAX_BULK_OFFER_BYTES).recv(5000)
    const before = listener.stats.badKey
    // A peer that learnt the offer but claims another identity derives different keys.
    await expect(acceptBulkOffer(offer as Uint8Array, { localPeer: 'someone-else', remotePeer: source.peerId.toString() })).rejects.toThrow(/refused/)
    expect(listener.stats.badKey).toBe(before + 1)
  })
})
