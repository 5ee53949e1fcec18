// The arithmetic of a swarm transfer, pure so tests drive it directly.
//
// A chunk that some target lacks and no target holds must leave a seed (the source, or a host
// that already has the whole manifest) at least once; everything else can come from targets. The
// plan gives each such chunk to one target that needs it (its owner) by least assigned bytes, so
// consecutive chunks stripe across targets, and counts what each side sends. With N targets each
// downloading at R and seeds uploading at R, every target relays its 1/N share to N-1 others: a
// target downloads S, uploads S(N-1)/N < S, the seeds upload S, so the time is about S/R for any N.
//
// The service does not route by these stripes: seeds hand chunks out as targets ask
// (seed-handout.ts), which reaches the same totals while adapting to uneven links. The plan gives
// the coordinator the seed set and what the seeds must send (plannedSeedBytes); reassignStripe is
// the same arithmetic for a dead owner's share.
import type { Bitfield } from './bitfield.js'

export interface PlanTarget {
  id: string
  /** Chunks the target already holds. */
  have: Bitfield
}

export interface TransferPlan {
  /** Per target: chunk indices it fetches from a seed, ascending. */
  stripes: Map<string, number[]>
  /** Bytes the seeds upload if every owner completes: each missing chunk once. */
  seedBytes: number
  /** Per target: bytes it is expected to upload to other targets (its stripe times its other needers). */
  relayBytes: Map<string, number>
  /** Per target: bytes it lacks at the start. */
  missingBytes: Map<string, number>
}

/** Assigns every chunk that a target needs and no target holds to one needing target. */
export function planTransfer (sizes: readonly number[], targets: readonly PlanTarget[]): TransferPlan {
  const stripes = new Map<string, number[]>()
  const assigned = new Map<string, number>()
  const relayBytes = new Map<string, number>()
  const missingBytes = new Map<string, number>()
  for (const t of targets) {
    if (t.have.count !== sizes.length) throw new RangeError(`target ${t.id} has a have-map of ${t.have.count} chunks, the manifest has ${sizes.length}`)
    stripes.set(t.id, [])
    assigned.set(t.id, 0)
    relayBytes.set(t.id, 0)
    missingBytes.set(t.id, 0)
  }
  let seedBytes = 0
  for (let i = 0; i < sizes.length; i++) {
    const size = sizes[i] as number
    const needers = targets.filter((t) => !t.have.has(i))
    for (const t of needers) missingBytes.set(t.id, (missingBytes.get(t.id) ?? 0) + size)
    if (needers.length === 0) continue
    if (needers.length < targets.length) {
      // A target already holds it: the holders relay it, no seed needs to send it.
      const holders = targets.filter((t) => t.have.has(i))
      for (const h of holders) relayBytes.set(h.id, (relayBytes.get(h.id) ?? 0) + size * needers.length / holders.length)
      continue
    }
    const owner = leastLoaded(needers, assigned) as PlanTarget
    stripes.get(owner.id)?.push(i)
    assigned.set(owner.id, (assigned.get(owner.id) ?? 0) + size)
    relayBytes.set(owner.id, (relayBytes.get(owner.id) ?? 0) + size * (needers.length - 1))
    seedBytes += size
  }
  return { stripes, seedBytes, relayBytes, missingBytes }
}

/**
 * Splits a dead target's stripe over the surviving targets (least assigned bytes first), so the
 * seeds serve what it had not yet passed on once more, and only once. `load` is each survivor's
 * current stripe size in bytes (updated in place).
 */
export function reassignStripe (stripe: readonly number[], sizes: readonly number[], survivors: readonly string[], load: Map<string, number>): Map<string, number[]> {
  const out = new Map<string, number[]>(survivors.map((s) => [s, []]))
  if (survivors.length === 0) return out
  const ids = survivors.map((id) => ({ id }))
  for (const i of stripe) {
    const owner = leastLoaded(ids, load) as { id: string }
    out.get(owner.id)?.push(i)
    load.set(owner.id, (load.get(owner.id) ?? 0) + (sizes[i] ?? 0))
  }
  return out
}

function leastLoaded<T extends { id: string }> (candidates: readonly T[], load: Map<string, number>): T | undefined {
  let best: T | undefined
  let bestLoad = Infinity
  for (const c of candidates) {
    const l = load.get(c.id) ?? 0
    if (l < bestLoad) { best = c; bestLoad = l }
  }
  return best
}

export interface LinkRates {
  /** Bytes per second each seed can upload (their sum is what the seeds give together). */
  seedUploadBytesPerS: number
  /** Per target: download and upload rate in bytes per second. */
  downloadBytesPerS: number
  uploadBytesPerS: number
}

/**
 * The shortest time the plan can take on these links, in ms: the slowest of the seeds' upload,
 * each target's download of what it lacks, and each target's upload of its relays. The benchmark
 * compares the measured time against the single-host limit S/R, which this equals when N ≥ 2.
 */
export function planLowerBoundMs (plan: TransferPlan, rates: LinkRates): number {
  let worst = plan.seedBytes / rates.seedUploadBytesPerS
  for (const m of plan.missingBytes.values()) worst = Math.max(worst, m / rates.downloadBytesPerS)
  for (const r of plan.relayBytes.values()) worst = Math.max(worst, r / rates.uploadBytesPerS)
  return worst * 1000
}

/** Seeds' upload over the manifest's stored bytes: 1.0 means each byte left the seeds once. */
export function seedEgressRatio (plan: TransferPlan, storedBytes: number): number {
  return storedBytes === 0 ? 0 : plan.seedBytes / storedBytes
}
