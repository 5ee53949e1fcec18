// Renders members for people (a table) and for programs (JSON with stable field names).
import type { vmesh } from '@vmesh/wire'
import { pb } from '@vmesh/wire'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdText } from '@vmesh/mesh'

export const statusName: Record<number, string> = {
  [pb.MemberState.ALIVE]: 'alive',
  [pb.MemberState.SUSPECT]: 'suspect',
  [pb.MemberState.DEAD]: 'dead',
  [pb.MemberState.LEFT]: 'left'
}

export interface MemberJson {
  id: string
  name: string
  addrs: string[]
  status: string
  incarnation: number
  self: boolean
  lastAdvertAgeMs: number
  accel: string
  cpu: { cores: number, load1: number }
  memMiB: { total: number, free: number }
  diskGiB: { free: number, total: number }
  ioUtil: number
  vms: number
  reserved: { vcpus: number, memMiB: number }
  agentVersion: string
}

export function memberJson (m: vmesh.v1.IMember | vmesh.v1.Member.$Properties): MemberJson {
  const r = m.resources ?? {}
  const gib = (mib: number | null | undefined): number => Math.round(((mib ?? 0) / 1024) * 10) / 10
  return {
    id: safePeerId(m.peerId),
    name: m.name ?? '',
    addrs: (m.addrs ?? []).map(safeAddr),
    status: statusName[m.state ?? 0] ?? 'unknown',
    incarnation: m.incarnation ?? 0,
    self: m.isSelf ?? false,
    lastAdvertAgeMs: m.lastAdvertAgeMs ?? 0,
    accel: r.accel ?? '',
    cpu: { cores: r.cpuCores ?? 0, load1: Math.round((r.load1 ?? 0) * 100) / 100 },
    memMiB: { total: r.memTotalMib ?? 0, free: r.memFreeMib ?? 0 },
    diskGiB: { free: gib(r.diskFreeMib), total: gib(r.diskTotalMib) },
    ioUtil: Math.round((r.ioUtil ?? 0) * 1000) / 1000,
    vms: (m.vms ?? []).length,
    reserved: { vcpus: r.vcpusReserved ?? 0, memMiB: r.memReservedMib ?? 0 },
    agentVersion: m.agentVersion ?? ''
  }
}

function safePeerId (bytes: Uint8Array | null | undefined): string {
  return peerIdText(bytes) ?? '?'
}

function safeAddr (bytes: Uint8Array): string {
  try { return multiaddr(bytes).toString() } catch { return '?' }
}

/** The address a person would dial: prefer a non-loopback IPv4 TCP address. */
function mainAddr (addrs: string[]): string {
  return addrs.find((a) => a.startsWith('/ip4/') && !a.startsWith('/ip4/127.')) ?? addrs[0] ?? '-'
}

export function formatAge (ms: number): string {
  if (ms < 1000) return `${ms}ms`
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`
  return `${Math.round(ms / 3_600_000)}h`
}

const statusOrder: Record<string, number> = { alive: 0, suspect: 1, dead: 2, left: 3 }

export function sortMembers (members: MemberJson[]): MemberJson[] {
  return [...members].sort((a, b) => (statusOrder[a.status] ?? 9) - (statusOrder[b.status] ?? 9) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
}

export function membersTable (members: MemberJson[], color = false): string {
  const paint = (status: string, text: string): string => {
    if (!color) return text
    const code = status === 'alive' ? 32 : status === 'suspect' ? 33 : status === 'dead' ? 31 : 90
    return `\x1b[${code}m${text}\x1b[0m`
  }
  const header = ['NAME', 'ID', 'ADDRESS', 'STATUS', 'INC', 'AGE', 'LOAD', 'CORES', 'MEM FREE/TOTAL', 'DISK FREE', 'IO', 'ACCEL', 'VMS']
  const rows = sortMembers(members).map((m) => [
    m.self ? `${m.name}*` : m.name,
    `…${m.id.slice(-8)}`,
    mainAddr(m.addrs),
    m.status,
    String(m.incarnation),
    formatAge(m.lastAdvertAgeMs),
    m.cpu.load1.toFixed(2),
    String(m.cpu.cores),
    `${m.memMiB.free}/${m.memMiB.total} MiB`,
    `${m.diskGiB.free} GiB`,
    `${Math.round(m.ioUtil * 100)}%`,
    m.accel || '-',
    String(m.vms)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  const out = [line(header)]
  for (const [i, r] of rows.entries()) {
    const status = sortMembers(members)[i]?.status ?? ''
    const text = line(r)
    out.push(paint(status, text))
  }
  return out.join('\n')
}

export function summary (members: MemberJson[]): string {
  const counts = new Map<string, number>()
  for (const m of members) counts.set(m.status, (counts.get(m.status) ?? 0) + 1)
  return [...counts.entries()].sort(([a], [b]) => (statusOrder[a] ?? 9) - (statusOrder[b] ?? 9)).map(([s, n]) => `${n} ${s}`).join(', ')
}
