// The requester side of an election: ask every candidate for a bid in parallel, choose the
// minimum-cost assignment, ask each winner to reserve, and re-plan around hosts that refuse or
// stay silent, for a few rounds. Hosts admit against their own state, so the plan can be wrong
// but never overcommits anyone.
import { randomBytes } from 'node:crypto'
import { assign } from './assign.js'
import type { PlacementConfig } from './config.js'
import type { Policy, Task } from './cost.js'
import type { Candidate, Log, PlacementTransport } from './placement-protocol.js'

export interface ElectOptions {
  policy?: Policy
  /** Place as many as fit instead of none when the cluster cannot take them all. */
  partial?: boolean
  signal?: AbortSignal
  /** Lease of each reservation (default config.leaseMs). */
  leaseMs?: number
  /** Progress for a person watching (the CLI's live view): bids in, each reservation answer. */
  onProgress?: (event: ElectionEvent) => void
}

export type ElectionEvent =
  | { type: 'bids', electionId: string, answered: number, silent: string[], capacity: number }
  | { type: 'reserved', electionId: string, round: number, peerId: string, name: string, count: number, reservationId: string }
  | { type: 'refused', electionId: string, round: number, peerId: string, name: string, reason: string }

export interface Placement {
  peerId: string
  name: string
  count: number
  reservationId: string
}

export interface HostReason {
  peerId: string
  name: string
  reason: string
}

export interface ElectionResult {
  electionId: string
  policy: Policy
  wanted: number
  placed: number
  /** True when all `wanted` were placed. */
  complete: boolean
  placements: Placement[]
  /** Why each host took fewer clones than it might have (filled whenever complete is false). */
  reasons: HostReason[]
  /** Names of hosts that did not answer the bid in time (skipped). */
  silent: string[]
  rounds: number
  /** One line for a person. */
  message: string
}

export interface ElectionDeps {
  transport: PlacementTransport
  candidates: Candidate[]
  config: PlacementConfig
  log?: Log
}

interface HostRound {
  host: Candidate
  name: string
  /** Marginal costs from its bid; cut short when it admits fewer than planned. */
  costs: number[]
  /** Clones this election holds on it already. */
  held: number
  reservations: Placement[]
  reason: string
  out: boolean
}

export class ElectionAbortedError extends Error {
  constructor () {
    super('the election was cancelled; its reservations were released')
    this.name = 'ElectionAbortedError'
  }
}

export async function runElection (deps: ElectionDeps, task: Task, count: number, opts: ElectOptions = {}): Promise<ElectionResult> {
  const { transport, config } = deps
  const policy = opts.policy ?? 'spread'
  const partial = opts.partial ?? false
  const leaseMs = opts.leaseMs ?? config.leaseMs
  const aborted = (): boolean => opts.signal?.aborted === true
  const electionId = randomBytes(8).toString('hex')
  const log = (level: 'debug' | 'info' | 'warn', msg: string): void => deps.log?.(level, `election ${electionId}: ${msg}`)
  if (!Number.isSafeInteger(count) || count < 1 || count > config.maxCount) {
    throw new RangeError(`clone count must be 1..${config.maxCount}, got ${count}`)
  }

  const hosts: HostRound[] = []
  const silent: string[] = []
  const reasons: HostReason[] = []
  const asked: Candidate[] = []
  for (const c of deps.candidates) {
    if (task.accel !== '' && c.accel !== undefined && c.accel !== task.accel) {
      reasons.push({ peerId: c.id, name: c.name, reason: `${c.name}: needs ${task.accel}, has ${c.accel === '' ? 'none' : c.accel}` })
    } else asked.push(c)
  }
  log('info', `asking ${asked.length} host(s) to bid for ${count} clone(s) of ${task.cpus} vCPU, ${task.memMib} MiB (${policy})`)

  // 1. Bids, in parallel; a host silent past the timeout is skipped and named.
  await Promise.all(asked.map(async (c) => {
    try {
      const bid = await transport.bid(c, { electionId, task, policy, count }, config.bidTimeoutMs, opts.signal)
      const name = bid.name !== '' ? bid.name : c.name
      hosts.push({ host: c, name, costs: bid.costs, held: 0, reservations: [], reason: bid.reason, out: false })
    } catch (err) {
      silent.push(c.name)
      reasons.push({ peerId: c.id, name: c.name, reason: `${c.name}: no bid (${(err as Error).message})` })
    }
  }))
  const progress = (e: ElectionEvent): void => {
    try { opts.onProgress?.(e) } catch { /* a watcher's failure is not the election's */ }
  }
  // Stable order (candidate order), so equal costs resolve the same way on every run.
  const order = new Map(deps.candidates.map((c, i) => [c.id, i]))
  hosts.sort((a, b) => (order.get(a.host.id) ?? 0) - (order.get(b.host.id) ?? 0))
  if (aborted()) throw new ElectionAbortedError()

  let remaining = count
  let rounds = 0
  const capacity = hosts.reduce((s, h) => s + h.costs.length, 0)
  progress({ type: 'bids', electionId, answered: hosts.length, silent: [...silent], capacity })
  if (!partial && capacity < count) {
    log('info', `the bids add up to ${capacity} clone(s) of ${count}: not reserving`)
  } else {
    // 2. Plan, reserve, re-plan around refusals and silence.
    while (remaining > 0 && rounds < config.rounds) {
      rounds++
      const pool = hosts.filter((h) => !h.out && h.costs.length > h.held)
      const plan = assign(pool.map((h) => ({ id: h.host.id, costs: h.costs.slice(h.held) })), remaining, true)
      if (plan.placed === 0) break
      const winners = pool.filter((h) => plan.counts.has(h.host.id))
      log('debug', `round ${rounds}: ${winners.map((h) => `${h.name} x${plan.counts.get(h.host.id) ?? 0}`).join(', ')}`)
      await Promise.all(winners.map(async (h) => {
        const want = plan.counts.get(h.host.id) ?? 0
        try {
          const a = await transport.reserve(h.host, { electionId, task, count: want, leaseMs }, config.reserveTimeoutMs, opts.signal)
          if (a.admitted > 0) {
            h.reservations.push({ peerId: h.host.id, name: h.name, count: a.admitted, reservationId: a.reservationId })
            h.held += a.admitted
            remaining -= a.admitted
            progress({ type: 'reserved', electionId, round: rounds, peerId: h.host.id, name: h.name, count: a.admitted, reservationId: a.reservationId })
          }
          if (a.admitted < want) {
            // Its state changed since the bid (another election, a VM started): it is full at
            // what it holds for us now.
            h.costs = h.costs.slice(0, h.held)
            h.reason = a.reason !== '' ? a.reason : `${h.name}: admitted ${a.admitted} of ${want}`
            progress({ type: 'refused', electionId, round: rounds, peerId: h.host.id, name: h.name, reason: h.reason })
          }
        } catch (err) {
          // Silent or refusing: plan around it. If it admitted after all, the lease frees it;
          // a best-effort release by election id frees it sooner, unless that would also take
          // back what it admitted in an earlier round (then the lease alone does).
          h.out = true
          h.reason = `${h.name}: reserve failed (${(err as Error).message})`
          log('warn', h.reason)
          progress({ type: 'refused', electionId, round: rounds, peerId: h.host.id, name: h.name, reason: h.reason })
          if (h.held === 0) void transport.release(h.host, { electionId }, config.reserveTimeoutMs).catch(() => {})
        }
      }))
      if (aborted()) break
    }
  }

  let placements = hosts.flatMap((h) => h.reservations)
  let placed = count - remaining
  const fits = rounds > 0 ? placed : capacity
  if (aborted()) {
    await releaseAll(transport, hosts, placements, config)
    throw new ElectionAbortedError()
  }
  if (remaining > 0 && !partial && placements.length > 0) {
    await releaseAll(transport, hosts, placements, config)
    placements = []
    placed = 0
  }
  const complete = remaining === 0
  if (!complete) {
    for (const h of hosts) {
      if (h.reason !== '') reasons.push({ peerId: h.host.id, name: h.name, reason: h.reason })
    }
  }
  const hostsUsed = new Set(placements.map((p) => p.peerId)).size
  let message: string
  if (complete) message = `placed ${count} clone(s) on ${hostsUsed} host(s)`
  else {
    const why = reasons.length > 0 ? reasons.map((r) => r.reason).join('; ') : 'no host is alive to take them'
    message = partial
      ? `placed ${placed} of ${count} clone(s) on ${hostsUsed} host(s); the rest do not fit: ${why}`
      : `cannot place ${count} clone(s), the cluster can take ${fits} now; none placed: ${why}`
  }
  log(complete ? 'info' : 'warn', message)
  return { electionId, policy, wanted: count, placed, complete, placements, reasons, silent, rounds, message }
}

async function releaseAll (transport: PlacementTransport, hosts: HostRound[], placements: Placement[], config: PlacementConfig): Promise<void> {
  const byId = new Map(hosts.map((h) => [h.host.id, h.host]))
  await Promise.all(placements.map(async (p) => {
    const host = byId.get(p.peerId)
    if (host === undefined) return
    await transport.release(host, { reservationId: p.reservationId }, config.reserveTimeoutMs).catch(() => {})
  }))
}
