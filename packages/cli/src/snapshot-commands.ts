// `vmesh snapshot ls | rm`: the snapshots clones are made from, cluster-wide. (`vmesh snapshot VM`,
// which takes one, is in vm-commands.ts; a VM named "ls" or "rm" is snapshotted with `snapshot -- ls`.)
import { parseArgs } from 'node:util'
import type { ControlClient, SnapshotEntry } from '@vmesh/agent'
import type { vmesh } from '@vmesh/wire'
import { targetOptionSpec } from './options.js'
import type { TargetOptions } from './options.js'
import { formatAge } from './format.js'
import { formatBytes } from './image-commands.js'

export const SNAPSHOT_SUBCOMMANDS = ['ls', 'rm']

export const snapshotUsage = `  vmesh snapshot ls [--json]                 every snapshot in the cluster: id, source, age, size, hosts holding it, VMs using it
  vmesh snapshot rm ID [--force] [--json]    delete it on every host (files, manifest, then chunk GC); VMs using it keep it
      (--force: drop the manifest and chunks even where VMs use its files; those files stay)
`

/** A snapshot as `snapshot ls --json` prints it: the agent's merged entry. */
export type SnapshotJson = SnapshotEntry

export interface Parsed { values: TargetOptions & { json?: boolean, force?: boolean }, positionals: string[] }

export function isSnapshotSubcommand (args: string[]): boolean {
  return SNAPSHOT_SUBCOMMANDS.includes(args[0] ?? '')
}

export function parseSnapshotArgs (sub: string, args: string[]): Parsed {
  const { values, positionals } = parseArgs({ args, options: { ...targetOptionSpec, force: { type: 'boolean' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true })
  if (sub !== 'rm' && values.force !== undefined) throw new Error(`vmesh snapshot ${sub} takes no --force`)
  return { values, positionals }
}

export function snapshotJson (s: vmesh.v1.ISnapshotInfo): SnapshotJson {
  return {
    manifestId: s.manifestId ?? '',
    snapshotId: s.snapshotId ?? '',
    sourceVm: s.sourceVm ?? '',
    createdAtMs: Number(s.createdAtMs ?? 0),
    storedBytes: Number(s.storedBytes ?? 0),
    holders: s.holders ?? [],
    partial: s.partial ?? [],
    users: (s.users ?? []).map((u) => ({ vm: u.vm ?? '', host: u.host ?? '', source: u.source === true }))
  }
}

export function snapshotsTable (snaps: SnapshotJson[], now = Date.now()): string {
  if (snaps.length === 0) return 'no snapshots in the cluster'
  const header = ['ID', 'SOURCE', 'SNAPSHOT', 'AGE', 'SIZE', 'HOSTS', 'USED BY']
  const rows = snaps.map((s) => [
    s.manifestId.slice(0, 12),
    s.sourceVm || '-',
    s.snapshotId || '-',
    s.createdAtMs > 0 ? formatAge(Math.max(0, now - s.createdAtMs)) : '-',
    formatBytes(s.storedBytes),
    [...s.holders, ...s.partial.map((h) => `${h} (partial)`)].join(', ') || '-',
    s.users.map((u) => `${u.vm}@${u.host}${u.source ? ' (source)' : ''}`).join(', ') || '-'
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n')
}

/** One line per host that held the snapshot, and whether the removal is complete (the exit code). */
export function removeReport (r: vmesh.v1.ISnapshotRemoveReply): { text: string, ok: boolean } {
  const id = (r.manifestId ?? '').slice(0, 12)
  const source = r.sourceVm ?? ''
  const hosts = (r.hosts ?? []).filter((h) => h.held === true || (h.error ?? '') !== '')
  const lines = [`snapshot ${id}${source !== '' ? ` of ${source}` : ''}:`]
  let freed = 0
  let ok = true
  for (const h of hosts) {
    const bytes = Number(h.freedBytes ?? 0)
    freed += bytes
    const users = h.inUseBy ?? []
    const sourceUses = users.includes(source)
    const clones = users.filter((u) => u !== source)
    const why: string[] = []
    if (clones.length > 0) why.push(`in use by ${clones.join(', ')}; destroy ${clones.length === 1 ? 'it' : 'them'} first${source !== '' ? ` (vmesh destroy --clones-of ${source})` : ''}`)
    if (sourceUses) why.push(`in use by ${source}, the source: its disk chain includes the snapshot's disk-delta, so its files stay while ${source} exists`)
    if ((h.error ?? '') !== '') { ok = false; lines.push(`  ${h.host ?? '?'}: failed: ${h.error ?? ''}`); continue }
    if (h.manifestRemoved !== true) {
      ok = false
      lines.push(`  ${h.host ?? '?'}: kept, ${why.join('; ')}${sourceUses && clones.length === 0 ? ' (--force drops its manifest and chunks)' : ''}`)
      continue
    }
    lines.push(`  ${h.host ?? '?'}: freed ${formatBytes(bytes)}${why.length > 0 ? `; files kept, ${why.join('; ')}` : ''}`)
  }
  if (hosts.length === 0) lines.push('  no host held it')
  lines.push(`freed ${formatBytes(freed)} in all${ok ? '' : '; the snapshot is not gone everywhere'}`)
  return { text: lines.join('\n'), ok }
}

/** Runs `snapshot ls` / `snapshot rm`; returns the text and the exit code. */
export async function runSnapshotCommand (sub: string, parsed: Parsed, client: ControlClient): Promise<{ text: string, code: number }> {
  const { values, positionals } = parsed
  if (sub === 'ls') {
    if (positionals.length > 0) throw new Error('usage: vmesh snapshot ls [--json]')
    const reply = (await client.call({ snapshotList: {} })).snapshotList
    const snaps = (reply?.snapshots ?? []).map(snapshotJson)
    const failed = reply?.failed ?? []
    if (values.json === true) return { text: JSON.stringify({ snapshots: snaps, failed }, null, 2), code: 0 }
    const notes = failed.map((f) => `no answer from ${f}`)
    return { text: [snapshotsTable(snaps), ...notes].join('\n'), code: 0 }
  }
  if (positionals.length !== 1) throw new Error('usage: vmesh snapshot rm ID [--force] (ID: from "vmesh snapshot ls")')
  const reply = (await client.call({ snapshotRemove: { ref: positionals[0] as string, force: values.force === true } })).snapshotRemove ?? {}
  const report = removeReport(reply)
  if (values.json === true) {
    const hosts = (reply.hosts ?? []).map((h) => ({ host: h.host ?? '', held: h.held === true, freedBytes: Number(h.freedBytes ?? 0), inUseBy: h.inUseBy ?? [], manifestRemoved: h.manifestRemoved === true, error: h.error ?? '' }))
    return { text: JSON.stringify({ manifestId: reply.manifestId ?? '', sourceVm: reply.sourceVm ?? '', hosts }, null, 2), code: report.ok ? 0 : 1 }
  }
  return { text: report.text, code: report.ok ? 0 : 1 }
}
