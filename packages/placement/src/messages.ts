// Conversions between the placement protocol's wire messages and the package's types, with a
// bound on every field: everything here comes from the network and is untrusted.
import { pb } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import type { PlacementConfig } from './config.js'
import type { Policy, Task } from './cost.js'

export class PlacementMessageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'PlacementMessageError'
  }
}

/** Bounds of the fields (beyond the config's counts and frame size). */
export const messageLimits = Object.freeze({
  maxCpus: 1024,
  maxMemMib: 1 << 24, // 16 TiB
  maxBytes: 2 ** 52,
  maxIdChars: 64,
  maxNameChars: 256,
  maxReasonChars: 1024,
  maxCost: 1e12
})

const ID = /^[A-Za-z0-9_-]+$/
const HEX64 = /^[0-9a-f]{64}$/
const ACCELS = new Set(['', 'kvm', 'tcg'])

function fail (msg: string): never {
  throw new PlacementMessageError(msg)
}

/**
 * A uint64 field left at its default decodes as a protobufjs Long zero (the generated prototype
 * defaults are built before @vmesh/wire switches Long off), so objects are read by value.
 */
function int (v: number | null | undefined, name: string, min: number, max: number): number {
  const n = typeof v === 'object' && v !== null ? Number(String(v)) : (v ?? 0)
  if (!Number.isSafeInteger(n) || n < min || n > max) fail(`${name} ${String(n)} is outside ${min}..${max}`)
  return n
}

function str (v: string | null | undefined, name: string, max: number): string {
  const s = v ?? ''
  if (s.length > max) fail(`${name} is longer than ${max} characters`)
  return s
}

export function checkId (v: string | null | undefined, name: string, allowEmpty = false): string {
  const s = str(v, name, messageLimits.maxIdChars)
  if (s === '' ? !allowEmpty : !ID.test(s)) fail(`${name} is missing or malformed`)
  return s
}

export function policyToWire (p: Policy): vmesh.v1.PlacementPolicy {
  return p === 'pack' ? pb.PlacementPolicy.PLACEMENT_POLICY_PACK : pb.PlacementPolicy.PLACEMENT_POLICY_SPREAD
}

export function policyFromWire (p: number | null | undefined): Policy {
  if (p === pb.PlacementPolicy.PLACEMENT_POLICY_PACK) return 'pack'
  if (p === undefined || p === null || p === pb.PlacementPolicy.PLACEMENT_POLICY_SPREAD || p === pb.PlacementPolicy.PLACEMENT_POLICY_UNSPECIFIED) return 'spread'
  return fail(`unknown policy ${p}`)
}

export function taskToWire (t: Task): vmesh.v1.PlacementTask.$Properties {
  return {
    cpus: t.cpus,
    memMib: t.memMib,
    diskBytes: t.diskBytes,
    accel: t.accel,
    manifestId: t.manifestId,
    manifestBytes: t.manifestBytes,
    ...(t.manifest !== undefined ? { manifest: t.manifest } : {})
  }
}

/** Checks a task, local or from the wire, and returns it in the package's form. */
export function taskFromWire (t: vmesh.v1.PlacementTask.$Properties | null | undefined): Task {
  if (t === null || t === undefined) fail('task is missing')
  const accel = str(t.accel, 'accel', 16)
  if (!ACCELS.has(accel)) fail(`accel "${accel}" is not one of kvm, tcg or empty`)
  const manifestId = str(t.manifestId, 'manifest id', 64)
  if (manifestId !== '' && !HEX64.test(manifestId)) fail('manifest id is not a hex SHA-256')
  const task: Task = {
    cpus: int(t.cpus, 'cpus', 1, messageLimits.maxCpus),
    memMib: int(t.memMib, 'memory MiB', 1, messageLimits.maxMemMib),
    diskBytes: int(t.diskBytes, 'disk bytes', 0, messageLimits.maxBytes),
    accel,
    manifestId,
    manifestBytes: int(t.manifestBytes, 'manifest bytes', 0, messageLimits.maxBytes)
  }
  if (t.manifest !== undefined && t.manifest !== null && t.manifest.length > 0) task.manifest = t.manifest
  return task
}

export interface BidRequestFields {
  electionId: string
  task: Task
  policy: Policy
  count: number
}

export function bidRequestFromWire (m: vmesh.v1.BidRequest.$Properties, config: PlacementConfig): BidRequestFields {
  return {
    electionId: checkId(m.electionId, 'election id'),
    task: taskFromWire(m.task),
    policy: policyFromWire(m.policy),
    count: int(m.count, 'count', 1, config.maxCount)
  }
}

export interface BidFields {
  name: string
  costs: number[]
  reason: string
  missingBytes: number
}

/** A bid as the requester accepts it: at most `asked` finite, non-negative costs. */
export function bidFromWire (m: vmesh.v1.Bid.$Properties | null | undefined, electionId: string, asked: number, config: PlacementConfig): BidFields {
  if (m === null || m === undefined) fail('reply carries no bid')
  if (m.electionId !== electionId) fail('bid is for another election')
  const costs = m.costs ?? []
  if (costs.length > Math.min(asked, config.maxClonesPerHost)) fail(`bid has ${costs.length} costs for ${asked} clones asked`)
  for (const c of costs) if (!Number.isFinite(c) || c < 0 || c > messageLimits.maxCost) fail('bid has a cost that is not a finite non-negative number')
  return {
    name: str(m.name, 'name', messageLimits.maxNameChars),
    costs: [...costs],
    reason: str(m.reason, 'reason', messageLimits.maxReasonChars),
    missingBytes: int(m.missingBytes, 'missing bytes', 0, messageLimits.maxBytes)
  }
}

export interface ReserveRequestFields {
  electionId: string
  task: Task
  count: number
  leaseMs: number
}

export function reserveRequestFromWire (m: vmesh.v1.ReserveRequest.$Properties, config: PlacementConfig): ReserveRequestFields {
  return {
    electionId: checkId(m.electionId, 'election id'),
    task: taskFromWire(m.task),
    count: int(m.count, 'count', 1, config.maxClonesPerHost),
    // The ledger clamps it to the configured bounds.
    leaseMs: int(m.leaseMs, 'lease ms', 0, 2 ** 32 - 1)
  }
}

export function reserveReplyFromWire (m: vmesh.v1.ReserveReply.$Properties | null | undefined, asked: number): { admitted: number, reservationId: string, reason: string } {
  if (m === null || m === undefined) fail('reply carries no reservation answer')
  const admitted = int(m.admitted, 'admitted', 0, asked)
  const reservationId = checkId(m.reservationId, 'reservation id', admitted === 0)
  return { admitted, reservationId: admitted === 0 ? '' : reservationId, reason: str(m.reason, 'reason', messageLimits.maxReasonChars) }
}

/** Trims a string we send so the peer's bounds always accept it. */
export function clip (s: string, max: number = messageLimits.maxReasonChars): string {
  return s.length <= max ? s : s.slice(0, max - 3) + '...'
}
