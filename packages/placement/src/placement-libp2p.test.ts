// PlacementService over real libp2p nodes (TCP + pnet + Noise + Yamux) in one process: every
// node is both a host and a requester. Shows that concurrent elections from two peers never
// overcommit, that a lease expires, and that a host silent at reserve time is re-planned around.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Libp2p } from 'libp2p'
import { generateKey } from '@libp2p/pnet'
import { Counters, createClientNode } from '@vmesh/mesh'
import { pb, streamChannel } from '@vmesh/wire'
import { placementConfig } from './config.js'
import type { Task } from './cost.js'
import { PLACEMENT_PROTOCOL } from './placement-protocol.js'
import type { Candidate } from './placement-protocol.js'
import type { HostState } from './reservations.js'
import { PlacementService } from './service.js'

const config = placementConfig({ bidTimeoutMs: 1500, reserveTimeoutMs: 1500, minLeaseMs: 50 })
const task: Task = { cpus: 1, memMib: 512, diskBytes: 1 << 20, accel: '', manifestId: 'b'.repeat(64), manifestBytes: 64 << 20 }

async function node (psk: Uint8Array): Promise<Libp2p> {
  return await createClientNode(psk, ['/ip4/127.0.0.1/tcp/0'])
}

/** A host with room for `clones` clones of 512 MiB after the 512 MiB headroom. */
function hostState (name: string, clones: number): HostState {
  const mem = 512 + clones * 512
  return {
    name,
    resources: { cpuCores: 8, load1: 0.2, memTotalMib: mem, memFreeMib: mem, diskTotalMib: 50_000, diskFreeMib: 40_000, ioUtil: 0.05, accel: 'kvm' },
    vms: [],
    missingBytes: (t) => t.manifestBytes
  }
}

interface Peer { node: Libp2p, service: PlacementService, counters: Counters, name: string }

describe('placement over libp2p', () => {
  const peers: Peer[] = []
  let silent: Libp2p
  let silentService: PlacementService
  let candidates: Candidate[] = []

  beforeAll(async () => {
    const psk = new Uint8Array(95)
    generateKey(psk)
    for (const name of ['h1', 'h2', 'h3']) {
      const n = await node(psk)
      const counters = new Counters()
      const service = new PlacementService({ node: n, hostState: () => hostState(name, 4), view: () => candidates, counters, config })
      await service.start()
      peers.push({ node: n, service, counters, name })
    }
    // h4 bids like any host but never answers a reservation: its handler swallows them.
    silent = await node(psk)
    silentService = new PlacementService({ node: silent, hostState: () => hostState('h4', 4), view: () => candidates, config })
    await silent.handle(PLACEMENT_PROTOCOL, (stream, connection) => {
      void (async () => {
        const ch = streamChannel(stream, config.maxFrameBytes)
        const frame = await ch.recv(5000).catch(() => undefined)
        if (frame === undefined) return
        if (pb.PlacementRequest.decode(frame).reserve != null) return // silence
        await ch.send(await silentService.host.answer(frame, connection.remotePeer.toString()))
        await ch.close()
      })().catch(() => {})
    })
    const all = [...peers.map((p) => ({ node: p.node, name: p.name })), { node: silent, name: 'h4' }]
    for (const a of all) {
      for (const b of all) if (a !== b) await a.node.peerStore.merge(b.node.peerId, { multiaddrs: b.node.getMultiaddrs() })
    }
    candidates = peers.map((p) => ({ id: p.node.peerId.toString(), name: p.name, peerId: p.node.peerId }))
  })

  afterAll(async () => {
    for (const p of peers) { await p.service.stop(); await p.node.stop() }
    silentService?.ledger.stop()
    await silent?.stop()
  })

  const reservedMib = (): number[] => peers.map((p) => p.service.ledger.totals().memReservedMib)
  const releaseAll = (): void => { for (const p of peers) for (const r of p.service.ledger.list()) p.service.ledger.release(r.id) }

  it('two concurrent elections from different peers never overcommit a host', async () => {
    // 3 hosts x 4 clones = 12 places; two peers ask for 8 each at the same moment.
    const [r1, r2] = await Promise.all([
      peers[0]!.service.elect(task, 8, { partial: true }),
      peers[1]!.service.elect(task, 8, { partial: true })
    ])
    expect(r1.placed + r2.placed).toBe(12)
    for (const mib of reservedMib()) expect(mib).toBe(2048)
    // The reservations each requester got are the ones the hosts hold, owned by that requester.
    for (const r of [r1, r2]) {
      for (const p of r.placements) {
        const host = peers.find((x) => x.node.peerId.toString() === p.peerId)
        expect(host?.service.ledger.get(p.reservationId)?.count).toBe(p.count)
      }
    }
    // A third election finds the cluster full and says why, per host.
    const r3 = await peers[2]!.service.elect(task, 1)
    expect(r3.complete).toBe(false)
    expect(r3.reasons.map((x) => x.reason).sort()).toEqual(['h1: needs 512 MiB, has 0 MiB free', 'h2: needs 512 MiB, has 0 MiB free', 'h3: needs 512 MiB, has 0 MiB free'])
    releaseAll()
  })

  it('a reservation whose clones never arrive expires with its lease', async () => {
    const r = await peers[0]!.service.elect(task, 3, { leaseMs: 300 })
    expect(r.complete).toBe(true)
    expect(reservedMib().reduce((a, b) => a + b, 0)).toBe(1536)
    const deadline = Date.now() + 5000
    while (reservedMib().some((m) => m > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(reservedMib()).toEqual([0, 0, 0])
  })

  it('the requester releases a reservation; a stranger cannot', async () => {
    const r = await peers[0]!.service.elect(task, 1)
    const p = r.placements[0]!
    const hostPeer = peers.find((x) => x.node.peerId.toString() === p.peerId)!
    const host = candidates.find((c) => c.id === p.peerId)!
    const stranger = peers.find((x) => x !== peers[0] && x !== hostPeer)!
    expect(await stranger.service.release(host, p.reservationId)).toBe(false)
    expect(await peers[0]!.service.release(host, p.reservationId)).toBe(true)
    expect(hostPeer.service.ledger.totals().reservations).toBe(0)
  })

  it('a host silent at reserve time is re-planned around', async () => {
    const withSilent: Candidate[] = [...candidates, { id: silent.peerId.toString(), name: 'h4', peerId: silent.peerId }]
    const saved = candidates
    candidates = withSilent
    try {
      const r = await peers[0]!.service.elect(task, 8)
      expect(r.complete).toBe(true)
      expect(r.placements.some((p) => p.name === 'h4')).toBe(false)
      expect(r.rounds).toBeGreaterThanOrEqual(2)
      expect(r.placements.reduce((s, p) => s + p.count, 0)).toBe(8)
      for (const mib of reservedMib()) expect(mib).toBeLessThanOrEqual(2048)
    } finally {
      candidates = saved
      releaseAll()
    }
  })

  it('garbage on the protocol is answered or dropped and counted, and the host keeps serving', async () => {
    const target = peers[1]!
    const stream = await peers[0]!.node.dialProtocol(target.node.peerId, PLACEMENT_PROTOCOL)
    const ch = streamChannel(stream, config.maxFrameBytes)
    await ch.send(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))
    const reply = pb.PlacementReply.decode((await ch.recv(2000))!)
    expect(reply.error).toMatch(/cannot decode/)
    await ch.close().catch(() => {})
    // A frame over the limit: the host aborts the stream instead of buffering it.
    const big = await peers[0]!.node.dialProtocol(target.node.peerId, PLACEMENT_PROTOCOL)
    const bigCh = streamChannel(big, 64 << 20)
    await bigCh.send(new Uint8Array(config.maxFrameBytes + 1)).catch(() => {})
    expect(await bigCh.recv(2000).catch(() => undefined)).toBeUndefined()
    const deadline = Date.now() + 2000
    while (target.counters.get('rejected.placement.frame') === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(target.counters.get('rejected.placement.decode')).toBe(1)
    expect(target.counters.get('rejected.placement.frame')).toBe(1)
    const r = await peers[0]!.service.elect(task, 2)
    expect(r.complete).toBe(true)
    releaseAll()
  })
})
