import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { ClusterView } from './view.js'
import { signAdvert, verifyAdvert } from './advert.js'
import type { VerifiedAdvert } from './advert.js'
import { peerIdToBytes } from './peer-ids.js'
import type { StatusChange } from './view.js'

async function advert (key: PrivateKey, incarnation: number, seq: number, port = 1000): Promise<VerifiedAdvert> {
  const id = peerIdFromPrivateKey(key)
  const signed = await signAdvert(key, {
    version: 1,
    peerId: peerIdToBytes(id),
    name: 'h',
    addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}`).bytes],
    incarnation,
    seq,
    resources: { cpuCores: 2, memTotalMib: 100, memFreeMib: 50, diskTotalMib: 10, diskFreeMib: 5, accel: 'tcg' }
  })
  return await verifyAdvert(signed)
}

describe('ClusterView merge rules', () => {
  it('adds a member as alive on its first advert and keeps only newer adverts', async () => {
    const key = await generateKeyPair('Ed25519')
    const view = new ClusterView('self', 10)
    const changes: StatusChange[] = []
    view.on('status', (c) => changes.push(c))
    view.applyAdvert(await advert(key, 1, 5, 1000))
    const id = peerIdFromPrivateKey(key).toString()
    expect(view.get(id)?.claim).toEqual({ status: 'alive', incarnation: 1 })
    view.applyAdvert(await advert(key, 1, 4, 2000)) // older seq: ignored
    expect(multiaddr(view.get(id)?.advert.addrs[0] as Uint8Array).toString()).toBe('/ip4/127.0.0.1/tcp/1000')
    view.applyAdvert(await advert(key, 1, 6, 3000))
    expect(multiaddr(view.get(id)?.advert.addrs[0] as Uint8Array).toString()).toBe('/ip4/127.0.0.1/tcp/3000')
    expect(changes.map((c) => c.to)).toEqual(['alive'])
  })

  it('an advert at the same incarnation does not clear suspicion; a higher one does', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const view = new ClusterView('self', 10)
    view.applyAdvert(await advert(key, 1, 1))
    expect(view.applyClaim(id, { status: 'suspect', incarnation: 1 })).toBe(true)
    view.applyAdvert(await advert(key, 1, 2))
    expect(view.get(id)?.claim.status).toBe('suspect')
    view.applyAdvert(await advert(key, 2, 1))
    expect(view.get(id)?.claim).toEqual({ status: 'alive', incarnation: 2 })
  })

  it('a dead member comes back only with a higher incarnation', async () => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const view = new ClusterView('self', 10)
    view.applyAdvert(await advert(key, 3, 1))
    view.applyClaim(id, { status: 'dead', incarnation: 3 })
    view.applyAdvert(await advert(key, 3, 9))
    expect(view.get(id)?.claim.status).toBe('dead')
    view.applyAdvert(await advert(key, 4, 1))
    expect(view.get(id)?.claim.status).toBe('alive')
  })

  it('ignores claims about unknown members and refuses members beyond its bound', async () => {
    const view = new ClusterView('self', 1)
    expect(view.applyClaim('nobody', { status: 'dead', incarnation: 9 })).toBe(false)
    expect(view.applyAdvert(await advert(await generateKeyPair('Ed25519'), 1, 1))).toBe(true)
    expect(view.applyAdvert(await advert(await generateKeyPair('Ed25519'), 1, 1))).toBe(false)
    expect(view.size).toBe(1)
  })

  it('reaps dead and left members after the reap delay, never alive ones', async () => {
    let now = 1000
    const view = new ClusterView('self', 10, () => now)
    const a = await generateKeyPair('Ed25519')
    const b = await generateKeyPair('Ed25519')
    view.applyAdvert(await advert(a, 1, 1))
    view.applyAdvert(await advert(b, 1, 1))
    view.applyClaim(peerIdFromPrivateKey(a).toString(), { status: 'left', incarnation: 1 })
    now += 500
    expect(view.reap(1000)).toEqual([])
    now += 600
    expect(view.reap(1000)).toEqual([peerIdFromPrivateKey(a).toString()])
    expect(view.size).toBe(1)
  })
})
