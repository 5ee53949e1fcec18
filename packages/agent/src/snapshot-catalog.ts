// The pure parts of `vmesh snapshot ls` / `snapshot rm`: which VMs use a snapshot's files, how
// the hosts' answers merge into one cluster-wide list, how a reference names one snapshot, and the
// checks on every list, request and result that arrives from the network.
import { isAbsolute, resolve, sep } from 'node:path'
import { isHash } from '@vmesh/store'
import { ControlError } from './control-server.js'

/** Bounds on what a host may send about snapshots. */
export const SNAPSHOT_LIMITS = {
  /** Snapshots one host may list (a host with more is misbehaving or needs a `snapshot rm`). */
  maxSnapshots: 4096,
  /** VMs and hosts named per snapshot. */
  maxNames: 1024,
  /** Characters of a reference or an error text. */
  maxRefChars: 128,
  maxErrorChars: 1000
}

/** One snapshot as a host (or, merged, the cluster) sees it. */
export interface SnapshotEntry {
  manifestId: string
  snapshotId: string
  sourceVm: string
  createdAtMs: number
  storedBytes: number
  /** Hosts holding the manifest and all its chunks. */
  holders: string[]
  /** Hosts holding part of it: chunks of a transfer cut short, or only files. */
  partial: string[]
  users: SnapshotUser[]
}

export interface SnapshotUser { vm: string, host: string, source: boolean }

export interface HostResult {
  host: string
  held: boolean
  freedBytes: number
  inUseBy: string[]
  manifestRemoved: boolean
  error: string
}

const SNAPSHOT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/
export const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/
const HOST_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
const HEX_PREFIX_RE = /^[0-9a-f]{8,64}$/

/** A driver snapshot id (also a directory name under <data-dir>/snapshots/). */
export function isSnapshotId (s: string): boolean {
  return SNAPSHOT_ID_RE.test(s) && !s.includes('..')
}

/** "web@web-m3x8k2" (the name importSnapshot gives a snapshot manifest) -> its parts. */
export function parseSnapshotName (name: string): { sourceVm: string, snapshotId: string } | undefined {
  const at = name.indexOf('@')
  if (at < 0) return undefined
  const sourceVm = name.slice(0, at)
  const snapshotId = name.slice(at + 1)
  if (!VM_NAME_RE.test(sourceVm) || !isSnapshotId(snapshotId)) return undefined
  return { sourceVm, snapshotId }
}

/**
 * The files a VM's disk chain and RAM map, from its state.json (hypervisor vm-state.ts): the disk
 * layers (the base, every snapshot's disk-delta under it) and the RAM files of a clone.
 */
export function vmFilePaths (state: unknown): string[] {
  if (typeof state !== 'object' || state === null) return []
  const s = state as { spec?: { diskLayers?: unknown }, ramFiles?: unknown }
  const out: string[] = []
  if (Array.isArray(s.spec?.diskLayers)) {
    for (const l of s.spec.diskLayers as unknown[]) {
      const p = (l as { path?: unknown } | null)?.path
      if (typeof p === 'string') out.push(p)
    }
  }
  if (typeof s.ramFiles === 'object' && s.ramFiles !== null) {
    for (const p of Object.values(s.ramFiles)) if (typeof p === 'string') out.push(p)
  }
  return out
}

/** Whether a file lies inside one of the directories (absolute paths; no prefix confusion "a" vs "ab"). */
export function insideAny (path: string, dirs: string[]): boolean {
  if (!isAbsolute(path)) return false
  const p = resolve(path)
  return dirs.some((d) => p.startsWith(resolve(d) + sep))
}

/** The VMs (name -> their files) that use a file inside the snapshot's directories. */
export function usersOf (vms: Array<{ name: string, paths: string[] }>, dirs: string[]): string[] {
  return vms.filter((v) => v.paths.some((p) => insideAny(p, dirs))).map((v) => v.name).sort()
}

/** One list per host -> one entry per snapshot: hosts and users united, the earliest creation time. */
export function mergeSnapshotLists (lists: SnapshotEntry[][]): SnapshotEntry[] {
  const byId = new Map<string, SnapshotEntry>()
  for (const list of lists) {
    for (const e of list) {
      const m = byId.get(e.manifestId)
      if (m === undefined) {
        byId.set(e.manifestId, { ...e, holders: [...e.holders], partial: [...e.partial], users: [...e.users] })
        continue
      }
      if (m.snapshotId === '') m.snapshotId = e.snapshotId
      if (m.sourceVm === '') m.sourceVm = e.sourceVm
      if (e.createdAtMs > 0 && (m.createdAtMs === 0 || e.createdAtMs < m.createdAtMs)) m.createdAtMs = e.createdAtMs
      m.storedBytes = Math.max(m.storedBytes, e.storedBytes)
      m.holders.push(...e.holders)
      m.partial.push(...e.partial)
      m.users.push(...e.users)
    }
  }
  const out = [...byId.values()].map((e) => {
    const holders = [...new Set(e.holders)].sort()
    const users = new Map(e.users.map((u) => [`${u.vm}\0${u.host}`, u]))
    return {
      ...e,
      holders,
      partial: [...new Set(e.partial)].filter((h) => !holders.includes(h)).sort(),
      users: [...users.values()].sort((a, b) => Number(b.source) - Number(a.source) || a.vm.localeCompare(b.vm))
    }
  })
  return out.sort((a, b) => a.createdAtMs - b.createdAtMs || a.manifestId.localeCompare(b.manifestId))
}

/**
 * A reference -> the one snapshot it names: a full manifest id, a unique id prefix of 8+ hex
 * characters (as image commands take), or the driver's snapshot id.
 */
export function resolveSnapshotRef (ref: string, snapshots: Array<{ manifestId: string, snapshotId: string }>): string {
  const r = checkRef(ref)
  const byId = snapshots.filter((s) => s.snapshotId === r)
  if (byId.length === 1) return (byId[0] as { manifestId: string }).manifestId
  const matches = [...new Set(snapshots.map((s) => s.manifestId).filter((id) => HEX_PREFIX_RE.test(r) && id.startsWith(r)))]
  if (matches.length === 1) return matches[0] as string
  if (matches.length > 1) throw new ControlError('AMBIGUOUS', `"${r}" is the start of ${matches.length} snapshots (${matches.map((m) => m.slice(0, 12)).join(', ')}); give more characters`)
  if (isHash(r)) return r
  throw new ControlError('NOT_FOUND', `no snapshot "${r}" in the cluster; "vmesh snapshot ls" lists them`)
}

function checkRef (ref: string): string {
  if (ref === '' || ref.length > SNAPSHOT_LIMITS.maxRefChars || !(HEX_PREFIX_RE.test(ref) || isSnapshotId(ref))) {
    throw new ControlError('BAD_REQUEST', `snapshot "${ref.slice(0, 80)}" is not a reference: give its manifest id, 8+ hex characters of it, or its snapshot id ("vmesh snapshot ls")`)
  }
  return ref
}

/**
 * What a snapshot_remove request may ask. From the CLI (fanOut): any reference. From another
 * member (its own fan-out): the full manifest id it resolved, nothing else.
 */
export function checkRemoveRequest (req: { ref?: string | null, force?: boolean | null } | null | undefined, fanOut: boolean): { ref: string, force: boolean } {
  const ref = checkRef(req?.ref ?? '')
  if (!fanOut && !isHash(ref)) throw new ControlError('BAD_REQUEST', 'between hosts a snapshot is named by its full manifest id')
  return { ref, force: req?.force === true }
}

type Wire<T> = { [K in keyof T]?: T[K] | null }

function str (v: unknown, re: RegExp, what: string): string {
  if (typeof v !== 'string' || !re.test(v)) throw new Error(`malformed ${what} ${JSON.stringify(String(v).slice(0, 80))}`)
  return v
}

/** A list of names from another host: bounded in count, each matching `re`. */
export function names (v: unknown, re: RegExp, what: string): string[] {
  const a = (v ?? []) as unknown[]
  if (!Array.isArray(a) || a.length > SNAPSHOT_LIMITS.maxNames) throw new Error(`too many ${what}s`)
  return a.map((x) => str(x, re, what))
}

function count (v: unknown, what: string): number {
  const n = Number(v ?? 0)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`malformed ${what}`)
  return n
}

/**
 * A host's snapshot list as it arrived: every field checked, or an Error saying what is wrong. A
 * host speaks for itself only: every host it names must be `host`.
 */
export function checkSnapshotList (snapshots: Array<Wire<Omit<SnapshotEntry, 'users'>> & { users?: Array<Wire<SnapshotUser>> | null }> | null | undefined, host: string): SnapshotEntry[] {
  const list = snapshots ?? []
  if (list.length > SNAPSHOT_LIMITS.maxSnapshots) throw new Error(`${list.length} snapshots, more than ${SNAPSHOT_LIMITS.maxSnapshots}`)
  const self = (h: string): string => {
    if (h !== host) throw new Error(`host ${host} answered for host "${h}"`)
    return h
  }
  return list.map((s) => {
    const users = s.users ?? []
    if (users.length > SNAPSHOT_LIMITS.maxNames) throw new Error('too many users')
    return {
      manifestId: str(s.manifestId, /^[0-9a-f]{64}$/, 'manifest id'),
      snapshotId: (s.snapshotId ?? '') === '' ? '' : str(s.snapshotId, SNAPSHOT_ID_RE, 'snapshot id'),
      sourceVm: (s.sourceVm ?? '') === '' ? '' : str(s.sourceVm, VM_NAME_RE, 'source VM'),
      createdAtMs: count(s.createdAtMs, 'creation time'),
      storedBytes: count(s.storedBytes, 'size'),
      holders: names(s.holders, HOST_NAME_RE, 'host').map(self),
      partial: names(s.partial, HOST_NAME_RE, 'host').map(self),
      users: users.map((u) => ({ vm: str(u.vm, VM_NAME_RE, 'VM name'), host: self(str(u.host, HOST_NAME_RE, 'host')), source: u.source === true }))
    }
  })
}

/** A host's remove result as it arrived, checked; its host name must be the one asked. */
export function checkHostResult (r: Wire<HostResult> | null | undefined, host: string): HostResult {
  if (r == null) throw new Error('no result')
  if (r.host !== host) throw new Error(`answered as "${String(r.host).slice(0, 64)}"`)
  return {
    host,
    held: r.held === true,
    freedBytes: count(r.freedBytes, 'byte count'),
    inUseBy: names(r.inUseBy, VM_NAME_RE, 'VM name'),
    manifestRemoved: r.manifestRemoved === true,
    error: String(r.error ?? '').slice(0, SNAPSHOT_LIMITS.maxErrorChars)
  }
}
