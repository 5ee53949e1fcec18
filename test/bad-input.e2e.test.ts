// Garbage on every protocol and on the control socket: random bytes, truncated and oversized
// frames, valid-looking messages with absurd values. Every agent must reject, count and keep
// running, and the cluster view must stay right.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { connect } from 'node:net'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createMeshNode, parseClusterKey, MESH_TOPICS, ADVERT_TOPIC, MEMBER_TOPIC, SYNC_PROTOCOL, PROBE_PROTOCOL, peerIdFromBytes, signAdvert } from '@vmesh/mesh'
import type { MeshNode } from '@vmesh/mesh'
import { CONTROL_PROTOCOL, CONTROL_SOCKET } from '@vmesh/agent'
import { pb, encodeFrame } from '@vmesh/wire'
import { TestCluster, waitFor } from './helpers/agents.js'
import type { TestAgent } from './helpers/agents.js'

/** Writes raw bytes to the unix control socket and waits for the agent to answer or close. */
async function sendRawToSocket (path: string, bytes: Uint8Array, endAfter = true): Promise<Buffer> {
  return await new Promise((resolve) => {
    const s = connect(path)
    const chunks: Buffer[] = []
    s.on('data', (d) => chunks.push(d))
    s.on('error', () => {})
    s.on('close', () => resolve(Buffer.concat(chunks)))
    s.on('connect', () => { s.write(bytes); if (endAfter) s.end() })
    setTimeout(() => s.destroy(), 3000)
  })
}

const varint = (n: number): Uint8Array => encodeFrame(new Uint8Array(0)).length === 1 && n < 128 ? new Uint8Array([n]) : (() => {
  const out: number[] = []
  do { let b = n & 0x7f; n = Math.floor(n / 128); if (n > 0) b |= 0x80; out.push(b) } while (n > 0)
  return new Uint8Array(out)
})()

describe('bad input on every protocol', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[] = []
  let attacker: MeshNode

  beforeAll(async () => {
    agents = await cluster.startMany(3, 'g')
    for (const a of agents) await waitFor(`${a.name} sees 3 alive`, async () => (await a.members()).filter((m) => m.status === 'alive').length === 3)
    // An insider with the right key but a fresh identity and no advert: it may send anything.
    attacker = await createMeshNode({
      privateKey: await generateKeyPair('Ed25519'),
      clusterKey: parseClusterKey(readFileSync(cluster.keyFile, 'utf8')),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      topics: MESH_TOPICS,
      maxMessageBytes: 1 << 20
    })
    for (const a of agents) await attacker.dial(multiaddr(await a.address()))
  })

  afterAll(async () => {
    await attacker?.stop()
    await cluster.stop()
  })

  it('the control socket survives random bytes, truncated, oversized and absurd frames', async () => {
    const sock = join(agents[0]!.dataDir, CONTROL_SOCKET)
    for (let i = 0; i < 30; i++) await sendRawToSocket(sock, randomBytes(1 + i * 37))
    await sendRawToSocket(sock, Buffer.concat([varint(100), randomBytes(10)]))           // truncated frame
    await sendRawToSocket(sock, Buffer.concat([varint(200 * 1024 * 1024), randomBytes(64)])) // oversized frame
    await sendRawToSocket(sock, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])) // endless length
    const unknown = await sendRawToSocket(sock, encodeFrame(pb.ControlRequest.encode({}).finish()))
    expect(unknown.length).toBeGreaterThan(0) // an ErrorReply, not silence
    const reply = pb.ControlResponse.decode(unknown.subarray(1))
    expect(reply.error?.code).toBe('UNSUPPORTED')
    // Many connections at once that never send anything must not lock others out forever.
    const idle = Array.from({ length: 80 }, () => connect(sock).on('error', () => {}))
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const s of idle) s.destroy()
    expect(agents[0]!.running).toBe(true)
    expect((await agents[0]!.members()).length).toBe(3)
  })

  it('libp2p protocol handlers survive garbage streams', async () => {
    for (const a of agents) {
      const target = multiaddr(await a.address())
      for (const protocol of [SYNC_PROTOCOL, PROBE_PROTOCOL, CONTROL_PROTOCOL]) {
        const payloads: Uint8Array[] = [
          randomBytes(5000),
          Buffer.concat([varint(100), randomBytes(10)]),
          Buffer.concat([varint(500 * 1024 * 1024), randomBytes(100)]),
          encodeFrame(randomBytes(300)),
          // valid framing, absurd content: a sync claiming 5000 members of garbage
          encodeFrame(pb.SyncMessage.encode({ entries: Array.from({ length: 5000 }, () => ({ advert: { advert: randomBytes(8), signature: randomBytes(8) }, state: 3, stateIncarnation: 2 ** 52 })) }).finish()),
          encodeFrame(pb.ProbeRequest.encode({ target: randomBytes(40), timeoutMs: 4_000_000_000 }).finish())
        ]
        for (const bytes of payloads) {
          try {
            const stream = await attacker.dialProtocol(target, protocol, { signal: AbortSignal.timeout(3000) })
            stream.send(bytes)
            await stream.close().catch(() => {})
          } catch { /* the agent may reset the stream: that is the point */ }
        }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
    for (const a of agents) expect(a.running).toBe(true)
  })

  it('gossip with garbage, forged and absurd messages is rejected and counted', async () => {
    const pubsub = attacker.services.pubsub
    const victim = await agents[1]!.self()
    const victimId = peerIdFromBytes(Buffer.from(await peerIdBytes(victim.id)))
    for (let i = 0; i < 20; i++) {
      await pubsub.publish(ADVERT_TOPIC, randomBytes(50 + i)).catch(() => {})
      await pubsub.publish(MEMBER_TOPIC, randomBytes(20 + i)).catch(() => {})
    }
    // A forged "left" for another member, and an advert about someone else signed by us.
    await pubsub.publish(MEMBER_TOPIC, pb.MemberEvent.encode({ subject: victimId.toMultihash().bytes, incarnation: victim.incarnation, state: pb.MemberState.LEFT }).finish()).catch(() => {})
    const forged = await signAdvert(await generateKeyPair('Ed25519'), { version: 1, peerId: victimId.toMultihash().bytes, name: 'evil', incarnation: 99, seq: 1, resources: {} })
    await pubsub.publish(ADVERT_TOPIC, pb.SignedAdvert.encode(forged).finish()).catch(() => {})
    // An absurd incarnation in a death claim.
    await pubsub.publish(MEMBER_TOPIC, pb.MemberEvent.encode({ subject: victimId.toMultihash().bytes, incarnation: 2 ** 50, state: pb.MemberState.DEAD }).finish()).catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 1500))
    for (const a of agents) {
      expect(a.running).toBe(true)
      const members = await a.members()
      expect(members.filter((m) => m.status === 'alive').length).toBe(3)
      const seen = members.find((m) => m.id === victim.id)
      expect(seen?.name).toBe(victim.name)
      expect(seen?.incarnation).toBeLessThan(victim.incarnation + 16)
    }
    const stats = await agents[0]!.client.call({ stats: {} })
    const counters = Object.fromEntries((stats.stats?.counters ?? []).map((c) => [c.name, c.value]))
    const rejected = Object.entries(counters).filter(([k]) => k.startsWith('rejected.')).reduce((s, [, v]) => s + Number(v), 0)
    expect(rejected).toBeGreaterThan(20)
  })

  it('raw TCP garbage to the listen port fails the private-network handshake harmlessly', async () => {
    for (const a of agents) {
      const m = /\/ip4\/([^/]+)\/tcp\/(\d+)/.exec(await a.address())!
      const addr = { host: m[1]!, port: Number(m[2]) }
      for (let i = 0; i < 10; i++) {
        await new Promise<void>((resolve) => {
          const s = connect(addr.port, addr.host)
          s.on('error', () => resolve())
          s.on('close', () => resolve())
          s.on('connect', () => { s.end(randomBytes(100 + i * 500)) })
          setTimeout(() => { s.destroy(); resolve() }, 2000)
        })
      }
    }
    for (const a of agents) {
      expect(a.running).toBe(true)
      expect((await a.members()).filter((m) => m.status === 'alive').length).toBe(3)
    }
  })
})

async function peerIdBytes (id: string): Promise<Uint8Array> {
  const { peerIdFromString } = await import('@libp2p/peer-id')
  return peerIdFromString(id).toMultihash().bytes
}
