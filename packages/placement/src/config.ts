// Every tunable of placement, with its default and the trade-off it makes (memberlist's
// config.go is the model). One object for the package; hosts of one cluster should share it,
// because bids from different hosts are compared with each other.

/** Weights of the terms of a host's cost. Costs are unitless; only their ratios matter. */
export interface CostWeights {
  /**
   * Memory utilisation after placing, squared. Memory is the resource a VM cannot borrow
   * (overcommitting it swaps or OOM-kills), so it weighs most. Squaring makes each further clone
   * on the same host dearer than the last: that rising marginal cost is what spreads clones.
   */
  memory: number
  /**
   * vCPU commitment after placing (against cores x overcommit), squared. Lower than memory
   * because vCPUs can be overcommitted; a crowded host still runs, only slower.
   */
  cpu: number
  /**
   * CPU load per core now (1-minute load average / cores, clamped to 0..2), paid per clone.
   * This is the host's real busyness, which declared vCPUs miss (non-VM work, busy guests).
   * Moderate: the load average lags by a minute and is noisy.
   */
  load: number
  /**
   * Disk I/O utilisation now (0..1), paid per clone. Clones restore from and write to the data
   * disk; a disk already busy delays their start and slows its neighbours.
   */
  io: number
  /**
   * Disk utilisation after placing (missing snapshot bytes + overlays), squared. Low: disk is
   * plentiful compared with memory, and the hard constraint already keeps a headroom.
   */
  disk: number
  /**
   * The cost of the task itself: the bytes of the snapshot this host still lacks, per GiB
   * (transferUnitBytes), paid once per host with its first clone, not per clone. A host that
   * already holds the base layers is cheaper by that much. Kept small (0.1 per GiB): the swarm
   * sends each byte from the source about once whatever the number of hosts, so a new host
   * costs transfer time on its own link rather than source bandwidth. With the defaults, a
   * 1 GiB snapshot weighs about as much as stacking a second 512 MiB clone on a 4 GiB host: it
   * decides between similar hosts but does not undo spreading.
   */
  transfer: number
  /**
   * 'pack' only: the cost of using one more host at all. It must outweigh the per-clone terms
   * (each below ~3 with the defaults) so that filling a used host always beats opening a new
   * one; the per-clone terms then only choose among equally full candidates.
   */
  packHost: number
  /**
   * 'pack' only: cost per clone of the memory left free after it (best fit). Prefers the host
   * the clone fills most, which keeps large holes open for large VMs.
   */
  packFit: number
}

export interface PlacementConfig {
  /**
   * Memory kept for the host itself (kernel, page cache, agent, QEMU's own overhead) and never
   * promised to VMs. Too small and a full host swaps; too large wastes memory on big hosts.
   */
  memHeadroomMib: number
  /** Disk kept free on the data filesystem: the chunk store and logs need room to work. */
  diskHeadroomMib: number
  /**
   * vCPUs that may be promised per physical core. 4 suits mostly idle research VMs (the VOC
   * model: many small guests); 1 gives every vCPU a core of its own at a quarter the density.
   */
  vcpuOvercommit: number
  weights: CostWeights
  /** Bytes per unit of transfer cost (see weights.transfer). */
  transferUnitBytes: number
  /** Most clones one host bids for or admits in one request: bounds bids and the assignment work. */
  maxClonesPerHost: number
  /** Most clones one election may ask for. */
  maxCount: number
  /** How long the requester waits for a bid; a host silent that long is skipped and named. */
  bidTimeoutMs: number
  /** How long the requester waits for a reservation answer before re-planning around the host. */
  reserveTimeoutMs: number
  /** Re-planning rounds after rejected or silent reservations before giving up on the rest. */
  rounds: number
  /**
   * Default lease of a reservation: if the clone has not arrived (ledger.arrived) by then, the
   * host frees the capacity. Long enough for snapshot + transfer + restore of a large VM; a
   * crashed requester then blocks capacity at most this long.
   */
  leaseMs: number
  /** Bounds on a lease asked for by a peer. */
  minLeaseMs: number
  maxLeaseMs: number
  /** Most live reservations a host keeps; beyond it new ones are refused (a flood guard). */
  maxReservations: number
  /** Largest frame of the placement protocol (a BidRequest may carry a whole manifest). */
  maxFrameBytes: number
  /** Time a host's handler waits for the request frame. */
  requestTimeoutMs: number
}

export const DEFAULT_WEIGHTS: Readonly<CostWeights> = Object.freeze({
  memory: 4,
  cpu: 2,
  load: 1,
  io: 1,
  disk: 0.5,
  transfer: 0.1,
  packHost: 20,
  packFit: 1
})

export function placementConfig (overrides: Partial<Omit<PlacementConfig, 'weights'>> & { weights?: Partial<CostWeights> } = {}): PlacementConfig {
  const { weights, ...rest } = overrides
  return {
    memHeadroomMib: 512,
    diskHeadroomMib: 1024,
    vcpuOvercommit: 4,
    transferUnitBytes: 1 << 30,
    maxClonesPerHost: 256,
    maxCount: 1024,
    bidTimeoutMs: 2000,
    reserveTimeoutMs: 3000,
    rounds: 3,
    leaseMs: 120_000,
    minLeaseMs: 100,
    maxLeaseMs: 30 * 60_000,
    maxReservations: 4096,
    maxFrameBytes: 4 << 20,
    requestTimeoutMs: 5000,
    ...rest,
    weights: { ...DEFAULT_WEIGHTS, ...weights }
  }
}
