// Every tunable of the mesh with its default and the trade-off behind it. Defaults are the LAN
// profile: a rack of hosts on one switch, round trips well under a millisecond, but hosts that may
// be busy running VMs (two busy cores must not cause false suspicions).

export interface MeshConfig {
  /**
   * How often each agent probes one member (round-robin over a shuffled list). Shorter finds
   * failures sooner but costs one ping per interval per agent.
   */
  probeIntervalMs: number
  /**
   * How long a direct ping may take before indirect probes start. A busy host can stall a
   * Node event loop for hundreds of milliseconds (measured: 20 agents and two busy loops on two
   * cores); 1 s keeps loaded hosts from looking dead. A crashed agent is found faster anyway:
   * its connections reset and the dial is refused at once.
   */
  probeTimeoutMs: number
  /** How many other members are asked to ping a target that missed a direct probe (SWIM's k). */
  indirectProbes: number
  /**
   * Suspicion lasts between min and max (Lifeguard): min = suspicionMinMs * max(1, log10(n)),
   * max = suspicionMaxFactor * min. Each independent confirmation moves it toward min, so a really
   * dead host is declared dead quickly while a lone, possibly wrong, suspicion waits longer.
   */
  suspicionMinMs: number
  suspicionMaxFactor: number
  /** Confirmations expected before the timeout reaches its minimum. */
  suspicionExpectedConfirmations: number
  /**
   * How often an agent looks whether its resources moved enough to publish a new advert
   * (advert-schedule.ts); changes to its VMs, reservations and manifests go out at once.
   */
  advertIntervalMs: number
  /** How often an agent republishes its advert even if nothing changed (also a liveness hint). */
  advertRefreshMs: number
  /**
   * How often each agent runs a push-pull sync (whole views both ways) with one random member,
   * besides the one on every new connection. This anti-entropy is what lets a member that missed
   * the gossip declaring it dead learn of it and refute; it also repairs any other lost update.
   */
  pushPullIntervalMs: number
  /** How often resources are re-read from /proc and the filesystem. */
  resourceSampleMs: number
  /** How long dead and left members stay in the view before they are forgotten. */
  reapAfterMs: number
  /** Largest gossip or sync message accepted, in bytes. */
  maxMessageBytes: number
  /** Most members a view holds; adverts beyond it are rejected. */
  maxMembers: number
}

export const lanConfig: MeshConfig = {
  probeIntervalMs: 1000,
  probeTimeoutMs: 1000,
  indirectProbes: 3,
  suspicionMinMs: 1200,
  suspicionMaxFactor: 4,
  suspicionExpectedConfirmations: 3,
  advertIntervalMs: 2000,
  advertRefreshMs: 10_000,
  pushPullIntervalMs: 5000,
  resourceSampleMs: 2000,
  reapAfterMs: 60 * 60 * 1000,
  maxMessageBytes: 256 * 1024,
  maxMembers: 4096
}

export function meshConfig (overrides: Partial<MeshConfig> = {}): MeshConfig {
  return { ...lanConfig, ...overrides }
}
