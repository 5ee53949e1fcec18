import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { pb } from '@vmesh/wire'
import { signAdvert, verifyAdvert } from './advert.js'
import { peerIdToBytes } from './peer-ids.js'

async function base (over: Record<string, unknown> = {}) {
  const key = await generateKeyPair('Ed25519')
  const advert = {
    version: 1,
    peerId: peerIdToBytes(peerIdFromPrivateKey(key)),
    name: 'host-1',
    addrs: [multiaddr('/ip4/127.0.0.1/tcp/7946').bytes],
    incarnation: 1,
    seq: 1,
    resources: { cpuCores: 2, load1: 0.5, memTotalMib: 1024, memFreeMib: 512, diskTotalMib: 100, diskFreeMib: 50, ioUtil: 0.1, accel: 'tcg' },
    ...over
  }
  return { key, advert }
}

describe('advert signing and validation', () => {
  it('accepts a well-formed advert signed by its own peer', async () => {
    const { key, advert } = await base()
    const v = await verifyAdvert(await signAdvert(key, advert), peerIdFromPrivateKey(key))
    expect(v.advert.name).toBe('host-1')
  })

  it('rejects an advert signed by another key', async () => {
    const { advert } = await base()
    const other = await generateKeyPair('Ed25519')
    await expect(verifyAdvert(await signAdvert(other, advert))).rejects.toThrow(/signature/)
  })

  it('rejects an advert published by a peer other than its subject', async () => {
    const { key, advert } = await base()
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    await expect(verifyAdvert(await signAdvert(key, advert), other)).rejects.toThrow(/published an advert for/)
  })

  it('rejects a tampered advert', async () => {
    const { key, advert } = await base()
    const signed = await signAdvert(key, advert)
    const bytes = Uint8Array.from(signed.advert as Uint8Array)
    const decoded = pb.Advert.decode(bytes)
    decoded.name = 'evil'
    await expect(verifyAdvert({ advert: pb.Advert.encode(decoded).finish(), signature: signed.signature })).rejects.toThrow(/signature/)
  })

  it.each([
    ['absurd core count', { resources: { cpuCores: 10_000_000, memTotalMib: 1, memFreeMib: 1 } }],
    ['more memory free than total', { resources: { memTotalMib: 10, memFreeMib: 20 } }],
    ['negative load', { resources: { load1: -1 } }],
    ['NaN I/O', { resources: { ioUtil: Number.NaN } }],
    ['unknown accelerator', { resources: { accel: 'warp' } }],
    ['empty name', { name: '' }],
    ['huge name', { name: 'x'.repeat(1000) }],
    ['too many addresses', { addrs: Array.from({ length: 100 }, () => multiaddr('/ip4/1.2.3.4/tcp/1').bytes) }],
    // Not random bytes: those decode as a valid multiaddr now and then (a flaky test).
    ['garbage address', { addrs: [Uint8Array.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3])] }],
    ['future version', { version: 99 }],
    ['too many VMs', { vms: Array.from({ length: 2000 }, (_, i) => ({ name: `vm${i}`, cpus: 1, memMib: 1 })) }],
    ['absurd VM', { vms: [{ name: 'vm', cpus: 1_000_000, memMib: 1 }] }]
  ])('rejects %s', async (_what, over) => {
    const { key, advert } = await base(over)
    await expect(verifyAdvert(await signAdvert(key, advert))).rejects.toThrow()
  })

  it('rejects random bytes and empty signatures without throwing anything but AdvertError', async () => {
    for (let i = 0; i < 200; i++) {
      const err = await verifyAdvert({ advert: randomBytes(1 + (i % 300)), signature: randomBytes(64) }).catch((e: Error) => e)
      expect(err).toBeInstanceOf(Error)
      expect((err as Error).name).toBe('AdvertError')
    }
    await expect(verifyAdvert({ advert: randomBytes(10), signature: new Uint8Array() })).rejects.toThrow(/signature/)
  })
})
