// Builds the libp2p node every agent (and a CLI attaching with --peer) runs: TCP, a pre-shared-key
// private network, Noise, Yamux, identify, ping and gossipsub with StrictSign.
import { createLibp2p } from 'libp2p'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import type { Ping } from '@libp2p/ping'
import type { Identify } from '@libp2p/identify'

export const DEFAULT_PORT = 7946

export type MeshServices = { pubsub: GossipSub, ping: Ping, identify: Identify }
export type MeshNode = Libp2p<MeshServices>

export interface MeshNodeOptions {
  privateKey: PrivateKey
  clusterKey: Uint8Array
  /** Multiaddrs to listen on; empty for a client that only dials (the CLI's --peer). */
  listen: string[]
  /** Gossipsub topics this node may carry (others are dropped unread). */
  topics: string[]
  maxMessageBytes: number
}

export async function createMeshNode (opts: MeshNodeOptions): Promise<MeshNode> {
  return await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk: opts.clusterKey, timeout: 5000 }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      maxConnections: 1024,
      // libp2p rate-limits inbound connections per source IP (5/s by default); a rack restarting
      // at once, or many agents on one test host, would be refused. The cluster key already
      // keeps strangers out before any work is done.
      inboundConnectionThreshold: 200,
      maxIncomingPendingConnections: 128
    },
    services: {
      identify: identify(),
      ping: ping({ timeout: 5000, maxInboundStreams: 64, maxOutboundStreams: 64 }),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // Membership is small and latency matters more than bandwidth: flood our own messages.
        floodPublish: true,
        allowedTopics: opts.topics,
        maxInboundDataLength: opts.maxMessageBytes,
        heartbeatInterval: 500,
        // Every copy of a message is signature-checked before gossipsub looks it up as a
        // duplicate, unless a fast id finds it first; each message reaches a host from up to D
        // peers, so without this an idle lab agent spent about a seventh of its CPU (profile) on
        // Ed25519 checks of copies.
        // Sender and sequence number is what the StrictSign message id is made of, and only a
        // message that passed its signature check enters the fast-id cache.
        fastMsgIdFn: fastMessageId,
        // Gossipsub's IP-colocation penalty (a Sybil defence) graylists every peer once more
        // than 10 share an address: NAT'd racks and loopback test clusters would stop hearing
        // each other. Membership is already gated by the cluster key, so it is off.
        scoreParams: { IPColocationFactorWeight: 0 }
      } as Parameters<typeof gossipsub>[0])
    }
  }) as MeshNode
}

/** Gossipsub's fast message id: the sender and its sequence number, as hex. */
export function fastMessageId (msg: { from?: Uint8Array, seqno?: Uint8Array }): string {
  return `${Buffer.from(msg.from ?? []).toString('hex')}/${Buffer.from(msg.seqno ?? []).toString('hex')}`
}

/**
 * A node without membership or gossip: what `vmesh ... --peer` runs to reach an agent's control
 * protocol (it only dials), and with `listen` the two ends of a single-protocol test. Same
 * private network and encryption as an agent, an ephemeral identity.
 */
export async function createClientNode (clusterKey: Uint8Array, listen: string[] = []): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk: clusterKey, timeout: 5000 }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}
