// Every tunable of the swarm, with its default and why.

export interface SwarmConfig {
  /**
   * Chunk requests a puller keeps outstanding on one link (to a relay; see seedQueueChunks for
   * the seed). A relay's upload queue is (N-1) x this, so the last chunks wait behind less with
   * a small one; 2 x 1 MiB still covers the request round trip and a server's disk read. With
   * requests spread breadth-first (request-spread.ts), N=8, 3 rounds of 3 runs alternating: 2
   * gave median 1.215 (1.189-1.264) against 1.233 (1.212-1.270) for 4, and 1.212 against 1.224
   * for 1. Earlier, filling one link after another, 2 and 4 were level (N=8 1.242 against 1.245;
   * N=4 1.142 against 1.166).
   */
  perLinkInflight: number
  /**
   * Chunks the handing-out seed should have queued across all its targets: each target keeps
   * max(1, this / targets) "fresh" requests there. The seed decides which chunk a request gets
   * when it serves it, so a deep queue commits chunks to targets early (relays lag, the end
   * drags); a shallow one idles the seed's upload when a process stalls. 8 MiB is ~0.3 s of a
   * 200 mbit link: one target alone measured 171 mbit with 2 requests queued (a restore was
   * running beside it), 4 targets measured the same with 2 or 4 each. At 8 targets one each
   * (the floor was 2): 3 rounds of 3 runs alternating, median 1.216 (1.187-1.255) against 1.236
   * (1.186-1.335), as in session 8 (1.243, 1.215 against 1.265, 1.251).
   */
  seedQueueChunks: number
  /** Outstanding requests over all links of one pull: bounds memory to about this many chunks. */
  maxInflight: number
  /**
   * Verified chunks held in memory while their durable write is pending (bytes). Beyond it a
   * receiver stops reading until the disk catches up.
   */
  maxUnwrittenBytes: number
  /** Verified chunks kept in memory for relaying (bytes). */
  cacheBytes: number
  /** How often a target reports progress to the coordinator. */
  progressIntervalMs: number
  /**
   * A target silent this long is taken for dead (its chunks are then handed out again). 30 s: on
   * a saturated 2-core machine progress reports every 250 ms arrived up to 15 s apart.
   */
  targetSilenceMs: number
  /** Time for a target to answer the start with its have-map. */
  readyTimeoutMs: number
  /** A failed link is re-opened after this long (the peer may have restarted). */
  relinkDelayMs: number
  /**
   * With nothing in flight and nothing obtainable from targets for this long, a puller fetches a
   * missing chunk from a seed even if it is another target's stripe: a safety net for a stripe
   * owner that is alive for the coordinator but unreachable from here. Costs seed egress.
   */
  stallFallbackMs: number
  /**
   * End game: once a seed has handed out every chunk, it may send chunks a second time to targets
   * that ask while it is idle, up to this fraction of the manifest's chunks. The last chunks out
   * otherwise reach N-1 targets through one relay's upload alone (a tail of about (N-1) chunk
   * times); the budget caps what it costs: seed egress ≤ 1 + this fraction.
   * Off by default: measured at N=4, 200 mbit, the seed's upload is never idle before its last
   * hand-out, so the duplicates (2.7% of the image) only queued behind it and cost egress with
   * no gain in time (1.143 vs 1.143 median time ratio, 3 runs each). Session 3 with 0.05: the
   * same at N=4 (1.153 vs 1.154) for 1.05 egress, while a clone's push of 100 MiB to 3 hosts
   * gained a little (bench-clone 8, 6 alternating pairs, each faster: median 1.555 vs 1.595,
   * egress 1.02-1.03), but a budget of one duplicate per target then lost 4 of 4 pairs to none
   * (1.53-1.61 vs 1.49-1.57): within this machine's noise either way.
   */
  endgameFraction: number
  /**
   * Once the seed has handed out every chunk (its upload idles), a target whose chunk has waited
   * at a relay for relayWaitMs asks the seed for it too, up to this fraction of the chunks /
   * targets in all. Costs seed egress: ≤ 1 + this fraction, and only when a relay
   * stalls (a relay that stops uploading for a moment otherwise ends the push alone, the other
   * targets waiting on the chunks only it holds). Session 7, bench-transfer 256 8 200mbit
   * --tmpfs, 3 rounds of 3 runs alternating with 0: time ratio median 1.208 (1.188-1.288)
   * against 1.236 (1.208-1.408), egress 1.004-1.012.
   */
  stalledRelayFraction: number
  /**
   * How long a chunk asked of a relay may wait there, not begun, before a target may ask the
   * idle seed for it too (within stalledRelayFraction). Per request rather than per link, so a
   * relay that trickles out one chunk while others wait behind it counts as well. Session 12,
   * N=8, 3 rounds of 3 runs alternating: 1000 median 1.155 (1.141-1.302) egress 1.004-1.066, 300
   * 1.167 (1.134-1.182) egress ~1.055, 150 1.164 (1.127-1.203) egress ~1.055: shorter waits spend
   * the whole budget on duplicates that gain no time (the relay's copy still goes out, taking
   * its upload from the others).
   */
  relayWaitMs: number
  /**
   * Cut-through (partial-chunks.ts): a host passes a chunk on while it arrives, each 256 KiB piece
   * once it checks out against the piece hashes its sender gave (themselves checked against the
   * manifest's pieces digest), instead of once the whole chunk is in. 2: any reception that comes
   * with piece hashes (a seed's hand-outs, and relays give the hashes on); 1: only chunks from a
   * seed; 0: whole chunks only. A hop then costs a piece's time at a shared upload rather than a
   * chunk's. N=8, 3 rounds of 3 runs alternating: 1 against 0, median 1.156 (1.134-1.213) against
   * 1.187 (1.161-1.208); then 2 against 1, 1.160 (1.127-1.276) against 1.173 (1.145-1.307).
   */
  cutThrough: number
  /**
   * How long a host may gather have-updates that name a second or later copy of a chunk before
   * it sends them (have-batch.ts), in ms; 0 sends every update on the next turn of the event loop.
   * Updates for the swarm's first copy of a chunk (received from a seed, or a seed's own) always
   * go at once. N=8, 3 rounds of 3 runs alternating: 0 median 1.160 (1.148-1.410) with the
   * machine 85% busy, 50 1.163 (1.138-1.291) at 82%, 150 1.167 (1.131-1.200) at 80%: the time
   * level, the CPU 4-6 points lower (the hosts' CPU is for their VMs). Batching every update
   * alike (first copies too): 0 1.190, 25 1.170, 100 1.177, 88% / 84% / 78% busy.
   */
  haveBatchMs: number
}

export const DEFAULT_SWARM_CONFIG: SwarmConfig = {
  perLinkInflight: 2,
  seedQueueChunks: 8,
  maxInflight: 48,
  maxUnwrittenBytes: 64 * 1024 * 1024,
  cacheBytes: 64 * 1024 * 1024,
  progressIntervalMs: 250,
  targetSilenceMs: 30_000,
  readyTimeoutMs: 30_000,
  relinkDelayMs: 1000,
  stallFallbackMs: 5000,
  endgameFraction: 0,
  stalledRelayFraction: 0.05,
  relayWaitMs: 1000,
  cutThrough: 2,
  haveBatchMs: 50
}

/** Per-host caps in bytes per second; 0 or absent means unlimited. */
export interface RateLimits {
  uploadBytesPerS?: number
  downloadBytesPerS?: number
}

/** Name of the environment variable that overrides swarm tunables, for A/B benchmarks. */
export const SWARM_TUNING_ENV = 'VMESH_SWARM_TUNING'
const MAX_TUNING_CHARS = 4096

/**
 * Overrides from a JSON object of SwarmConfig fields, e.g. '{"perLinkInflight":2}', so a
 * benchmark can compare two settings with the same build (scripts/bench-transfer passes the
 * environment on to the lab's agents). Unknown fields and values that are not finite numbers
 * >= 0 are refused with an error naming them: a typo must not silently benchmark the default.
 */
export function parseSwarmTuning (text: string | undefined): Partial<SwarmConfig> {
  if (text === undefined || text.trim() === '') return {}
  if (text.length > MAX_TUNING_CHARS) throw new Error(`${SWARM_TUNING_ENV} is ${text.length} characters; at most ${MAX_TUNING_CHARS}`)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(`${SWARM_TUNING_ENV} is not JSON: ${(err as Error).message}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${SWARM_TUNING_ENV} must be a JSON object such as {"perLinkInflight":2}`)
  const out: Record<string, number> = {}
  for (const [key, value] of Object.entries(parsed)) {
    if (!Object.hasOwn(DEFAULT_SWARM_CONFIG, key)) throw new Error(`${SWARM_TUNING_ENV}: unknown field ${JSON.stringify(key).slice(0, 60)}; known: ${Object.keys(DEFAULT_SWARM_CONFIG).join(', ')}`)
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new Error(`${SWARM_TUNING_ENV}: ${key} must be a finite number >= 0, got ${JSON.stringify(value)?.slice(0, 60)}`)
    out[key] = value
  }
  return out as Partial<SwarmConfig>
}
