// The cost of placing clones on one host: pure functions of the host's state and the task, so
// the maths is tested on its own (memberlist's suspicion.go style); bids and the ledger call it.
import type { PlacementConfig } from './config.js'

const MiB = 1024 * 1024

export type Policy = 'spread' | 'pack'

/** What one clone needs. */
export interface Task {
  cpus: number
  memMib: number
  /** Disk each clone's copy-on-write overlay may grow to. */
  diskBytes: number
  /** '' runs anywhere; 'kvm' needs hardware virtualisation on the host. */
  accel: string
  /** Id (hex SHA-256) of the snapshot manifest the clones start from; '' if none. */
  manifestId: string
  /** Total bytes of that snapshot: what a host lacks if it cannot tell better. */
  manifestBytes: number
  /** The encoded manifest, so a host that does not have it can still count the chunks it holds. */
  manifest?: Uint8Array
}

/** The resources part of a host's state (the advert's Resources). */
export interface HostResources {
  cpuCores: number
  load1: number
  memTotalMib: number
  memFreeMib: number
  diskTotalMib: number
  diskFreeMib: number
  ioUtil: number
  accel: string
}

/** A host's state as the cost function sees it. */
export interface HostSnapshot {
  name: string
  resources: HostResources
  /** vCPUs and memory declared by the VMs present on the host (running or paused). */
  vmCpus: number
  vmMemMib: number
  /** What live reservations already hold. */
  reserved: { cpus: number, memMib: number, diskBytes: number }
  /** Bytes of the task's snapshot the host does not hold yet. */
  missingBytes: number
}

export type Constraint = 'accel' | 'memory' | 'cpu' | 'disk' | 'limit'

/** How many clones a host can take, and why not one more. */
export interface Capacity {
  max: number
  /** The constraint that stops the (max+1)th clone. */
  limitedBy: Constraint
  /** For a person: "b3f2: needs 256 MiB, has 180 MiB free". */
  reason: string
  free: { cpus: number, memMib: number, diskBytes: number }
}

const fmtBytes = (n: number): string =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= MiB ? `${(n / MiB).toFixed(0)} MiB` : `${Math.max(0, Math.round(n))} B`

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`

/**
 * Free capacity after headroom, VMs and reservations. Memory takes the smaller of two estimates:
 * declared (total - headroom - VMs - reservations) and observed (MemAvailable - headroom -
 * reservations), so neither a VM that has not touched its memory yet nor a non-VM memory hog
 * makes the host look emptier than it is.
 */
export function freeResources (h: HostSnapshot, config: PlacementConfig): Capacity['free'] {
  const r = h.resources
  const declared = r.memTotalMib - config.memHeadroomMib - h.vmMemMib - h.reserved.memMib
  const observed = r.memFreeMib - config.memHeadroomMib - h.reserved.memMib
  return {
    memMib: Math.max(0, Math.min(declared, observed)),
    cpus: Math.max(0, r.cpuCores * config.vcpuOvercommit - h.vmCpus - h.reserved.cpus),
    diskBytes: Math.max(0, (r.diskFreeMib - config.diskHeadroomMib) * MiB - h.reserved.diskBytes)
  }
}

/** Hard constraints: the most clones of `task` the host can take (up to `limit`), and why. */
export function capacity (h: HostSnapshot, task: Task, config: PlacementConfig, limit = config.maxClonesPerHost): Capacity {
  const free = freeResources(h, config)
  const r = h.resources
  if (task.accel !== '' && r.accel !== task.accel) {
    return { max: 0, limitedBy: 'accel', reason: `${h.name}: needs ${task.accel}, has ${r.accel === '' ? 'none' : r.accel}`, free }
  }
  const byMem = task.memMib > 0 ? Math.floor(free.memMib / task.memMib) : Infinity
  const byCpu = task.cpus > 0 ? Math.floor(free.cpus / task.cpus) : Infinity
  const diskForClones = free.diskBytes - h.missingBytes
  const byDisk = diskForClones < 0 ? 0 : task.diskBytes > 0 ? Math.floor(diskForClones / task.diskBytes) : Infinity
  const max = Math.max(0, Math.min(byMem, byCpu, byDisk, limit))
  const k = max + 1
  const needs = max === 0 ? '' : ` for ${plural(k, 'clone')}`
  if (max === byMem) {
    return { max, limitedBy: 'memory', reason: `${h.name}: needs ${k * task.memMib} MiB${needs}, has ${free.memMib} MiB free`, free }
  }
  if (max === byCpu) {
    const cap = r.cpuCores * config.vcpuOvercommit
    return { max, limitedBy: 'cpu', reason: `${h.name}: needs ${plural(k * task.cpus, 'vCPU')}${needs}, has ${free.cpus} free (${r.cpuCores} cores x overcommit ${config.vcpuOvercommit} = ${cap}, ${cap - free.cpus} in use or reserved)`, free }
  }
  if (max === byDisk) {
    const need = h.missingBytes + k * task.diskBytes
    const parts = h.missingBytes > 0 ? ` (${fmtBytes(h.missingBytes)} of snapshot it lacks + ${k} x ${fmtBytes(task.diskBytes)} overlay)` : ''
    return { max, limitedBy: 'disk', reason: `${h.name}: needs ${fmtBytes(need)} of disk${needs}${parts}, has ${fmtBytes(free.diskBytes)} free`, free }
  }
  return { max, limitedBy: 'limit', reason: `${h.name}: takes at most ${plural(limit, 'clone')} per request`, free }
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, Number.isFinite(x) ? x : hi))

/**
 * Total cost of placing k clones of the task on the host (k=0 costs 0), ignoring hard
 * constraints (see capacity). Bids send the differences: marginalCosts.
 *
 * spread: C(k) = wMem*uMem(k)^2 + wCpu*uCpu(k)^2 + wDisk*uDisk(k)^2 + k*(wLoad*load + wIo*io)
 *              + [k>0] wTransfer*missing/unit - C(0)'s utilisation terms
 *   u(k) is utilisation after k clones. Squared utilisation makes each additional clone on a
 *   host cost more than the one before (the marginal rises linearly), so clones spread, and a
 *   host that is already full pays more for its first clone than an empty one.
 * pack:   C(k) = [k>0] (wPackHost + wTransfer*missing/unit) + k*(wLoad*load + wIo*io)
 *              + wPackFit * sum_{i=1..k} (1 - uMem(i))
 *   A large price for using a host at all, then clones are cheap and get cheaper as the host
 *   fills (best fit): the fewest hosts are used.
 */
export function totalCost (h: HostSnapshot, task: Task, k: number, policy: Policy, config: PlacementConfig): number {
  if (k <= 0) return 0
  const w = config.weights
  const r = h.resources
  const memCap = Math.max(1, r.memTotalMib - config.memHeadroomMib)
  const free = freeResources(h, config)
  const memUsed = memCap - free.memMib
  const cpuCap = Math.max(1, r.cpuCores * config.vcpuOvercommit)
  const cpuUsed = cpuCap - free.cpus
  const diskCap = Math.max(1, (r.diskTotalMib - config.diskHeadroomMib) * MiB)
  const diskUsed = diskCap - free.diskBytes
  const uMem = (n: number): number => (memUsed + n * task.memMib) / memCap
  const uCpu = (n: number): number => (cpuUsed + n * task.cpus) / cpuCap
  const uDisk = (n: number): number => (diskUsed + h.missingBytes + n * task.diskBytes) / diskCap
  const busy = w.load * clamp(r.load1 / Math.max(1, r.cpuCores), 0, 2) + w.io * clamp(r.ioUtil, 0, 1)
  const transfer = w.transfer * h.missingBytes / config.transferUnitBytes
  if (policy === 'pack') {
    let fit = 0
    for (let i = 1; i <= k; i++) fit += clamp(1 - uMem(i), 0, 1)
    return w.packHost + transfer + k * busy + w.packFit * fit
  }
  const sq = (x: number): number => x * x
  // Cost relative to k=0, so the first clone's marginal is what it adds, not the host's past.
  const util = (n: number): number => w.memory * sq(uMem(n)) + w.cpu * sq(uCpu(n)) + w.disk * sq(n === 0 ? (diskUsed / diskCap) : uDisk(n))
  return util(k) - util(0) + k * busy + transfer
}

/** Cost of each additional clone on the host: element i is C(i+1) - C(i), for i < count. */
export function marginalCosts (h: HostSnapshot, task: Task, count: number, policy: Policy, config: PlacementConfig): number[] {
  const out: number[] = []
  let prev = 0
  for (let k = 1; k <= count; k++) {
    const c = totalCost(h, task, k, policy, config)
    out.push(c - prev)
    prev = c
  }
  return out
}

/** A host's answer to a bid request: marginal costs for up to `count` clones, or why not. */
export interface HostBid {
  costs: number[]
  /** Why the host cannot take more than costs.length (empty when it can take all asked). */
  reason: string
  limitedBy: Constraint | ''
}

export function hostBid (h: HostSnapshot, task: Task, count: number, policy: Policy, config: PlacementConfig): HostBid {
  const cap = capacity(h, task, config, Math.min(count, config.maxClonesPerHost))
  const n = Math.min(cap.max, count)
  const enough = n >= count
  return {
    costs: marginalCosts(h, task, n, policy, config),
    reason: enough ? '' : cap.reason,
    limitedBy: enough ? '' : cap.limitedBy
  }
}
