// The host-side ledger of reservations. A host admits a reservation only against its own
// current state (never the requester's view of it), one admission at a time, so two concurrent
// elections can never promise the same memory twice. Each reservation holds a lease: if its
// clones never arrive, the capacity comes back by itself.
import { randomBytes } from 'node:crypto'
import type { PlacementConfig } from './config.js'
import { capacity, hostBid } from './cost.js'
import type { HostBid, HostResources, HostSnapshot, Policy, Task } from './cost.js'

/** This host's true state, as the agent knows it right now. */
export interface HostState {
  name: string
  resources: HostResources
  /** VMs on this host (their declared size counts against capacity unless stopped or failed). */
  vms: ReadonlyArray<{ state: string, cpus: number, memMib: number }>
  /** Bytes of the task's snapshot this host lacks (from its chunk store; see @vmesh/store missingBytes). */
  missingBytes: (task: Task) => number | Promise<number>
}

export interface Reservation {
  id: string
  electionId: string
  /** Peer id of the requester: only it may release the reservation over the network. */
  owner: string
  /** Clones still expected. */
  count: number
  task: Pick<Task, 'cpus' | 'memMib' | 'diskBytes'>
  /** Disk held for the snapshot bytes still to arrive; dropped once the first clone arrives. */
  transferBytes: number
  createdAt: number
  expiresAt: number
}

export interface ReserveRequest {
  electionId: string
  owner: string
  task: Task
  count: number
  leaseMs: number
}

export interface Admission {
  /** Clones admitted, 0..count. */
  admitted: number
  /** Empty when nothing was admitted. */
  reservationId: string
  /** Why fewer than asked were admitted (empty if all were). */
  reason: string
}

export interface ReservedTotals {
  /** For the advert's Resources.vcpus_reserved and mem_reserved_mib. */
  vcpusReserved: number
  memReservedMib: number
  diskReservedBytes: number
  reservations: number
}

export interface LedgerOptions {
  hostState: () => HostState | Promise<HostState>
  config: PlacementConfig
  now?: () => number
  /** Called whenever the reserved totals change (the agent re-advertises). */
  onChange?: () => void
  log?: (level: 'debug' | 'info' | 'warn', msg: string) => void
}

const INACTIVE_VM_STATES = new Set(['stopped', 'failed'])

/** A host's state plus the ledger's reservations, as the cost function takes it. */
export function snapshotOf (state: HostState, reserved: ReservedTotals, missingBytes: number): HostSnapshot {
  let vmCpus = 0
  let vmMemMib = 0
  for (const vm of state.vms) {
    if (INACTIVE_VM_STATES.has(vm.state)) continue
    vmCpus += vm.cpus
    vmMemMib += vm.memMib
  }
  return {
    name: state.name,
    resources: state.resources,
    vmCpus,
    vmMemMib,
    reserved: { cpus: reserved.vcpusReserved, memMib: reserved.memReservedMib, diskBytes: reserved.diskReservedBytes },
    missingBytes
  }
}

export class ReservationLedger {
  private readonly reservations = new Map<string, Reservation>()
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>()
  /** Admissions run one after another on this chain. */
  private queue: Promise<unknown> = Promise.resolve()
  private readonly now: () => number

  constructor (private readonly opts: LedgerOptions) {
    this.now = opts.now ?? Date.now
  }

  totals (): ReservedTotals {
    let vcpusReserved = 0
    let memReservedMib = 0
    let diskReservedBytes = 0
    for (const r of this.reservations.values()) {
      vcpusReserved += r.count * r.task.cpus
      memReservedMib += r.count * r.task.memMib
      diskReservedBytes += r.count * r.task.diskBytes + r.transferBytes
    }
    return { vcpusReserved, memReservedMib, diskReservedBytes, reservations: this.reservations.size }
  }

  list (): Reservation[] {
    return [...this.reservations.values()].map((r) => ({ ...r, task: { ...r.task } }))
  }

  get (id: string): Reservation | undefined {
    const r = this.reservations.get(id)
    return r === undefined ? undefined : { ...r, task: { ...r.task } }
  }

  /** This host's bid: marginal costs against its current state and reservations. */
  async bid (task: Task, count: number, policy: Policy): Promise<HostBid & { missingBytes: number, name: string }> {
    const state = await this.opts.hostState()
    const missing = await state.missingBytes(task)
    return { ...hostBid(snapshotOf(state, this.totals(), missing), task, count, policy, this.opts.config), missingBytes: missing, name: state.name }
  }

  /**
   * Admits up to req.count clones against this host's state at this moment. Serialised: the
   * next admission sees this one's reservation.
   */
  async admit (req: ReserveRequest): Promise<Admission> {
    const run = this.queue.then(async () => await this.admitNow(req))
    this.queue = run.catch(() => {})
    return await run
  }

  private async admitNow (req: ReserveRequest): Promise<Admission> {
    const { config } = this.opts
    if (this.reservations.size >= config.maxReservations) {
      return { admitted: 0, reservationId: '', reason: `too many open reservations (${this.reservations.size}); try again when some clones have started` }
    }
    const state = await this.opts.hostState()
    const missing = await state.missingBytes(req.task)
    // Each reservation holds disk for the snapshot bytes still missing; two live reservations
    // of the same snapshot hold it twice (conservative: the chunks are stored once).
    const cap = capacity(snapshotOf(state, this.totals(), missing), req.task, config, Math.min(req.count, config.maxClonesPerHost))
    const admitted = Math.min(req.count, cap.max)
    if (admitted <= 0) return { admitted: 0, reservationId: '', reason: cap.reason }
    const id = randomBytes(12).toString('hex')
    // 0 (unset on the wire) means the default lease.
    const leaseMs = req.leaseMs > 0 ? Math.min(Math.max(req.leaseMs, config.minLeaseMs), config.maxLeaseMs) : config.leaseMs
    const now = this.now()
    this.reservations.set(id, {
      id,
      electionId: req.electionId,
      owner: req.owner,
      count: admitted,
      task: { cpus: req.task.cpus, memMib: req.task.memMib, diskBytes: req.task.diskBytes },
      transferBytes: missing,
      createdAt: now,
      expiresAt: now + leaseMs
    })
    this.arm(id, leaseMs)
    this.log('info', `reserved ${admitted} x (${req.task.cpus} vCPU, ${req.task.memMib} MiB) for election ${req.electionId} as ${id}, lease ${leaseMs} ms`)
    this.opts.onChange?.()
    return { admitted, reservationId: id, reason: admitted < req.count ? cap.reason : '' }
  }

  /**
   * n clones of the reservation arrived and now count as VMs in hostState(): their share is
   * dropped. Call after the VM is in the host's VM list, so capacity is never counted free.
   */
  arrived (id: string, n = 1): boolean {
    const r = this.reservations.get(id)
    if (r === undefined) return false
    r.count -= Math.max(0, Math.min(n, r.count))
    r.transferBytes = 0
    if (r.count === 0) this.drop(id, 'all clones arrived')
    else this.opts.onChange?.()
    return true
  }

  /** Extends the lease (a long transfer still under way). */
  renew (id: string, leaseMs: number): boolean {
    const r = this.reservations.get(id)
    if (r === undefined) return false
    const ms = Math.min(Math.max(leaseMs, this.opts.config.minLeaseMs), this.opts.config.maxLeaseMs)
    r.expiresAt = this.now() + ms
    this.arm(id, ms)
    return true
  }

  /** Cancels a reservation; with `owner`, only if that peer made it. */
  release (id: string, owner?: string): boolean {
    const r = this.reservations.get(id)
    if (r === undefined || (owner !== undefined && r.owner !== owner)) return false
    this.drop(id, 'released')
    return true
  }

  /** Clears every lease timer (agent shutdown); reservations die with the process anyway. */
  stop (): void {
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  private arm (id: string, ms: number): void {
    const old = this.timers.get(id)
    if (old !== undefined) clearTimeout(old)
    const t = setTimeout(() => { this.drop(id, 'lease expired before the clones arrived') }, ms)
    t.unref?.()
    this.timers.set(id, t)
  }

  private drop (id: string, why: string): void {
    const r = this.reservations.get(id)
    if (r === undefined) return
    this.reservations.delete(id)
    const t = this.timers.get(id)
    if (t !== undefined) clearTimeout(t)
    this.timers.delete(id)
    this.log(why.startsWith('lease') ? 'warn' : 'debug', `reservation ${id} (election ${r.electionId}): ${why}`)
    this.opts.onChange?.()
  }

  private log (level: 'debug' | 'info' | 'warn', msg: string): void {
    this.opts.log?.(level, msg)
  }
}
