// `vmesh clone N VM`: asks any agent to clone a VM N times and draws the pipeline's progress:
// snapshot, election, per-host transfer bars and restores, then a final table.
import { parseArgs } from 'node:util'
import type { ControlClient } from '@vmesh/agent'
import type { vmesh } from '@vmesh/wire'
import { targetOptionSpec } from './options.js'
import type { TargetOptions } from './options.js'

export const cloneUsage = `  vmesh clone N VM [--policy spread|pack] [--partial] [--json]
                                             N running copies of VM on the best hosts, from any host
`

export function parseCloneArgs (args: string[]): { values: TargetOptions & { policy?: string, partial?: boolean, json?: boolean }, count: number, vm: string } {
  const { values, positionals } = parseArgs({ args, options: { ...targetOptionSpec, policy: { type: 'string' }, partial: { type: 'boolean' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true })
  if (positionals.length !== 2) throw new Error('usage: vmesh clone N VM [--policy spread|pack] [--partial] [--json]')
  const count = Number(positionals[0])
  if (!Number.isInteger(count) || count < 1) throw new Error(`clone count "${positionals[0] ?? ''}": give a whole number of at least 1`)
  return { values, count, vm: positionals[1] as string }
}

const mib = (n: number | null | undefined): string => `${(Number(n ?? 0) / 1048576).toFixed(1)} MiB`

function bar (done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.min(1, done / total) : 0
  const n = Math.round(f * width)
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(0).padStart(3)}%`
}

/** Keeps one line per host and redraws them in place on a terminal; prints events otherwise. */
class ProgressView {
  private readonly hosts = new Map<string, string>()
  private drawn = 0
  private lastPlain = new Map<string, number>()

  constructor (private readonly out: NodeJS.WriteStream) {}

  event (p: vmesh.v1.ICloneProgress): void {
    const phase = p.phase ?? ''
    if (phase === 'transfer' && p.host != null && p.host !== '') {
      const line = `${p.host.padEnd(16)} ${bar(Number(p.bytesDone ?? 0), Number(p.bytesTotal ?? 0))} ${mib(p.bytesDone)}/${mib(p.bytesTotal)} ${mib(p.rateBytesPerS)}/s ETA ${(Number(p.etaMs ?? 0) / 1000).toFixed(1)}s ${p.state ?? ''}`
      if (this.out.isTTY === true) { this.hosts.set(p.host, line); this.redraw() } else {
        // Without a terminal, one line per host per second at most, and every state change.
        const last = this.lastPlain.get(p.host) ?? 0
        if (Date.now() - last > 1000 || p.state === 'done' || p.state === 'failed') { this.lastPlain.set(p.host, Date.now()); this.out.write(line + '\n') }
      }
      return
    }
    if (p.message != null && p.message !== '') this.print(`${phase.padEnd(8)} ${p.message}`)
  }

  private print (line: string): void {
    this.clear()
    this.out.write(line + '\n')
    this.redraw()
  }

  private clear (): void {
    if (this.out.isTTY === true && this.drawn > 0) this.out.write(`\x1b[${this.drawn}A\x1b[J`)
    this.drawn = 0
  }

  private redraw (): void {
    if (this.out.isTTY !== true) return
    this.clear()
    for (const line of this.hosts.values()) this.out.write(line + '\n')
    this.drawn = this.hosts.size
  }
}

export function cloneTable (r: vmesh.v1.ICloneReply): string {
  const header = ['CLONE', 'HOST', 'STATE', 'TIME', 'RESTORE', 'MAC']
  const rows = (r.clones ?? []).map((c) => [c.name ?? '', c.host !== '' ? c.host ?? '-' : '-', c.state ?? '', `${(Number(c.ms ?? 0) / 1000).toFixed(1)}s`, c.restoreMs != null && c.restoreMs > 0 ? `${c.restoreMs.toFixed(0)} ms` : '-', c.mac !== '' ? c.mac ?? '-' : '-'])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)))
  const lines = [header, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd())
  const running = (r.clones ?? []).filter((c) => c.state === 'running').length
  lines.push('', `${running} of ${(r.clones ?? []).length} clone(s) of ${r.source ?? ''} running; snapshot ${mib(r.snapshotBytes)}, source paused ${(r.sourcePauseMs ?? 0).toFixed(1)} ms, source sent ${mib(r.sourceEgressBytes)}, total ${(Number(r.elapsedMs ?? 0) / 1000).toFixed(1)} s`)
  for (const n of r.notes ?? []) lines.push(`note: ${n}`)
  return lines.join('\n')
}

export async function cloneCommand (client: ControlClient, args: ReturnType<typeof parseCloneArgs>, out: NodeJS.WriteStream = process.stdout): Promise<string> {
  const view = new ProgressView(args.values.json === true ? process.stderr : out)
  let final: vmesh.v1.ICloneReply | undefined
  for await (const reply of client.stream({ clone: { vm: args.vm, count: args.count, policy: args.values.policy ?? '', partial: args.values.partial === true } })) {
    if (reply.cloneProgress != null) view.event(reply.cloneProgress)
    if (reply.clone != null) final = reply.clone
  }
  if (final === undefined) throw new Error('the agent finished without a result')
  if (args.values.json === true) {
    return JSON.stringify({
      source: final.source,
      sourceHost: final.sourceHost,
      manifestId: final.manifestId,
      elapsedMs: Number(final.elapsedMs ?? 0),
      sourcePauseMs: final.sourcePauseMs,
      snapshotBytes: Number(final.snapshotBytes ?? 0),
      sourceEgressBytes: Number(final.sourceEgressBytes ?? 0),
      transferMs: Number(final.transferMs ?? 0),
      clones: (final.clones ?? []).map((c) => ({ name: c.name, host: c.host, state: c.state, ms: Number(c.ms ?? 0), restoreMs: c.restoreMs, hostname: c.hostname, mac: c.mac, error: c.error !== '' ? c.error : undefined })),
      notes: final.notes
    }, null, 2)
  }
  return cloneTable(final)
}
