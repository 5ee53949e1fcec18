// `vmesh image add|push|ls|export|rm`: VM base images in the cluster's chunk stores. Push draws a
// progress bar per host (redrawn in place on a terminal, plain lines otherwise).
import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import type { ControlClient } from '@vmesh/agent'
import type { vmesh } from '@vmesh/wire'
import { clientFor, targetOptionSpec } from './options.js'
import { fetchMembers } from './commands.js'
import { peerIdText } from '@vmesh/mesh'

export const IMAGE_USAGE = `  vmesh image add FILE [--name NAME]          import a qcow2 or raw file on the agent's host; prints the id
      [--chunk-size 1MiB]                     bytes per chunk, a power of two in 64KiB..16MiB (default 1MiB)
  vmesh image push ID|NAME --hosts all|N|H,.. send it to hosts through the swarm, a progress bar per host
  vmesh image ls [--json]                     images here and which hosts hold each completely
  vmesh image export ID|NAME --out FILE       write it back out, bit-identical
  vmesh image rm ID|NAME [--json]             remove it from every host (manifest, name, unshared chunks)
      (an agent caps its swarm upload/download with --upload-rate / --download-rate, e.g. 200mbit)
`

/** --chunk-size: KiB or MiB, e.g. 1MiB or 256KiB; a power of two in 64KiB..16MiB (the agent checks it again). */
export function parseChunkSize (text: string): number {
  const m = /^(\d{1,5})(KiB|MiB)$/.exec(text)
  if (m === null) throw new Error(`--chunk-size "${text.slice(0, 40)}" must look like 1MiB or 256KiB`)
  const bytes = Number(m[1]) * (m[2] === 'MiB' ? 1 << 20 : 1 << 10)
  if (bytes < 64 << 10 || bytes > 16 << 20 || (bytes & (bytes - 1)) !== 0) throw new Error(`--chunk-size ${text} must be a power of two from 64KiB to 16MiB`)
  return bytes
}

export async function imageCommand (args: string[], out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'add': {
      const { values, positionals } = parseArgs({ args: rest, options: { ...targetOptionSpec, name: { type: 'string' }, 'chunk-size': { type: 'string' } }, allowPositionals: true, strict: true })
      const file = one(positionals, 'vmesh image add FILE')
      const chunkSize = values['chunk-size'] === undefined ? 0 : parseChunkSize(values['chunk-size'])
      return await withImageClient(values, async (c) => {
        const reply = await c.call({ imageAdd: { path: values.peer !== undefined ? file : resolve(file), name: values.name ?? '', chunkSize } })
        const img = reply.imageAdd?.image
        process.stderr.write(`added ${img?.name ?? ''}: ${formatBytes(img?.sizeBytes ?? 0)} (${formatBytes(img?.storedBytes ?? 0)} stored)\n`)
        out.write(`${img?.id ?? ''}\n`)
        return 0
      })
    }
    case 'push': {
      const { values, positionals } = parseArgs({ args: rest, options: { ...targetOptionSpec, hosts: { type: 'string' } }, allowPositionals: true, strict: true })
      const ref = one(positionals, 'vmesh image push ID|NAME --hosts all|N|HOST,...')
      if (values.hosts === undefined) throw new Error('vmesh image push needs --hosts all, --hosts N or --hosts HOST,HOST,...')
      const hosts = values.hosts
      return await withImageClient(values, async (c) => await pushCommand(c, ref, hosts, out))
    }
    case 'ls':
    case 'list': {
      const { values, positionals } = parseArgs({ args: rest, options: { ...targetOptionSpec, json: { type: 'boolean' } }, allowPositionals: true, strict: true })
      if (positionals.length > 0) throw new Error(`vmesh image ls takes no arguments, got ${positionals.join(' ')}`)
      return await withImageClient(values, async (c) => {
        out.write(await listCommand(c, values.json === true) + '\n')
        return 0
      })
    }
    case 'export': {
      const { values, positionals } = parseArgs({ args: rest, options: { ...targetOptionSpec, out: { type: 'string' } }, allowPositionals: true, strict: true })
      const ref = one(positionals, 'vmesh image export ID|NAME --out FILE')
      if (values.out === undefined) throw new Error('vmesh image export needs --out FILE')
      const path = values.peer !== undefined ? values.out : resolve(values.out)
      return await withImageClient(values, async (c) => {
        const reply = await c.call({ imageExport: { ref, outPath: path } })
        out.write(`wrote ${reply.imageExport?.path ?? path} (${formatBytes(reply.imageExport?.bytes ?? 0)}) from ${(reply.imageExport?.id ?? '').slice(0, 12)}\n`)
        return 0
      })
    }
    case 'rm': {
      const { values, positionals } = parseArgs({ args: rest, options: { ...targetOptionSpec, json: { type: 'boolean' } }, allowPositionals: true, strict: true })
      const ref = one(positionals, 'vmesh image rm ID|NAME')
      return await withImageClient(values, async (c) => {
        const { text, ok } = await removeCommand(c, ref, values.json === true)
        out.write(text)
        return ok ? 0 : 1
      })
    }
    default:
      process.stderr.write(`vmesh image: ${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\nUsage:\n${IMAGE_USAGE}`)
      return 2
  }
}

/** The image subcommands of `vmesh shell`, on its client (files to add or export are the CLI's). */
export const IMAGE_SHELL_SUBCOMMANDS = ['ls', 'push', 'rm']

export async function imageShellCommand (args: string[], client: ControlClient, out: NodeJS.WriteStream = process.stdout): Promise<string> {
  const [sub, ...rest] = args
  const parse = (options: Record<string, { type: 'string' | 'boolean' }>): ReturnType<typeof parseArgs> => parseArgs({ args: rest, options, allowPositionals: true, strict: true })
  switch (sub) {
    case 'ls': {
      const { values, positionals } = parse({ json: { type: 'boolean' } })
      if (positionals.length > 0) throw new Error(`image ls takes no arguments, got ${positionals.join(' ')}`)
      return await listCommand(client, values.json === true)
    }
    case 'push': {
      const { values, positionals } = parse({ hosts: { type: 'string' } })
      const ref = one(positionals, 'image push ID|NAME --hosts all|N|HOST,...')
      if (typeof values.hosts !== 'string') throw new Error('image push needs --hosts all, --hosts N or --hosts HOST,HOST,...')
      await pushCommand(client, ref, values.hosts, out)
      return ''
    }
    case 'rm': {
      const { values, positionals } = parse({ json: { type: 'boolean' } })
      return (await removeCommand(client, one(positionals, 'image rm ID|NAME'), values.json === true)).text.trimEnd()
    }
    default:
      throw new Error(`usage: image ls [--json] | image push ID|NAME --hosts all|N|HOST,... | image rm ID|NAME [--json]${sub === undefined ? '' : ` (not "${sub}")`}`)
  }
}

async function removeCommand (client: ControlClient, ref: string, json: boolean): Promise<{ text: string, ok: boolean }> {
  const report = imageRemoveReport((await client.call({ imageRemove: { ref } })).imageRemove ?? {})
  return { text: json ? JSON.stringify(report.json, null, 2) + '\n' : report.text, ok: report.ok }
}

function one (positionals: string[], usage: string): string {
  if (positionals.length !== 1) throw new Error(`usage: ${usage}`)
  return positionals[0] as string
}

async function withImageClient (o: Parameters<typeof clientFor>[0], fn: (c: ControlClient) => Promise<number>): Promise<number> {
  const client = await clientFor(o)
  try {
    return await fn(client)
  } finally {
    await client.close()
  }
}

interface HostLine {
  name: string
  state: string
  bytesDone: number
  bytesTotal: number
  rate: number
  etaMs: number
  error: string
}

async function pushCommand (client: ControlClient, ref: string, hosts: string, out: NodeJS.WriteStream): Promise<number> {
  const tty = out.isTTY === true
  const lines = new Map<string, HostLine>()
  const lastPrinted = new Map<string, { at: number, state: string }>()
  let drawn = 0
  const redraw = (): void => {
    const text = [...lines.values()].map((h) => progressLine(h, out.columns ?? 100))
    let s = drawn > 0 ? `\x1b[${drawn}A` : ''
    for (const t of text) s += `\r\x1b[2K${t}\n`
    out.write(s)
    drawn = text.length
  }
  const controller = new AbortController()
  const onSigint = (): void => controller.abort()
  process.once('SIGINT', onSigint)
  let final: vmesh.v1.ImagePushReply | undefined
  try {
    for await (const reply of client.stream({ imagePush: { ref, hosts } }, controller.signal)) {
      const p = reply.transferProgress
      if (p != null) {
        const id = safePeerId(p.host)
        const h = toLine(p)
        lines.set(id, h)
        if (tty) redraw()
        else {
          const prev = lastPrinted.get(id)
          if (prev === undefined || prev.state !== h.state || Date.now() - prev.at > 2000) {
            lastPrinted.set(id, { at: Date.now(), state: h.state })
            out.write(progressLine(h, 100) + '\n')
          }
        }
      }
      if (reply.imagePush != null) final = reply.imagePush as vmesh.v1.ImagePushReply
    }
  } finally {
    process.off('SIGINT', onSigint)
  }
  if (final === undefined) {
    out.write('push cancelled\n')
    return 1
  }
  for (const p of final.hosts ?? []) lines.set(safePeerId(p.host), toLine(p))
  if (tty) redraw()
  else for (const h of lines.values()) out.write(progressLine(h, 100) + '\n')
  const done = [...lines.values()].filter((h) => h.state === 'done').length
  const total = lines.size
  const stored = Math.max(0, ...[...lines.values()].map((h) => h.bytesTotal))
  const egress = Number(final.sourceEgressBytes ?? 0)
  out.write(`${done}/${total} host(s) hold ${(final.id ?? '').slice(0, 12)} after ${((final.elapsedMs ?? 0) / 1000).toFixed(1)} s; this host uploaded ${formatBytes(egress)}${stored > 0 ? ` (${(egress / stored).toFixed(2)}x the image)` : ''}\n`)
  for (const h of lines.values()) if (h.state === 'failed') out.write(`  ${h.name}: ${h.error}\n`)
  return done === total ? 0 : 1
}

function toLine (p: vmesh.v1.ITransferProgress | vmesh.v1.TransferProgress.$Properties): HostLine {
  return {
    name: p.hostName ?? '',
    state: p.state ?? '',
    bytesDone: Number(p.bytesDone ?? 0),
    bytesTotal: Number(p.bytesTotal ?? 0),
    rate: p.rateBytesPerS ?? 0,
    etaMs: Number(p.etaMs ?? 0),
    error: p.error ?? ''
  }
}

/** One host's bar: "b3  [#######.....]  42%  108.0 MiB/256.0 MiB  23.1 MiB/s  eta 6s  transferring". */
export function progressLine (h: HostLine, columns: number): string {
  const pct = h.bytesTotal > 0 ? Math.min(1, h.bytesDone / h.bytesTotal) : (h.state === 'done' ? 1 : 0)
  const width = Math.max(10, Math.min(40, columns - 80))
  const fill = Math.round(pct * width)
  const bar = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}]`
  const rate = h.state === 'transferring' && h.rate > 0 ? `${formatBytes(h.rate)}/s` : ''
  const eta = h.state === 'transferring' && h.etaMs > 0 ? `eta ${Math.ceil(h.etaMs / 1000)}s` : ''
  return [h.name.padEnd(12).slice(0, 16), bar, `${Math.floor(pct * 100)}%`.padStart(4), `${formatBytes(h.bytesDone)}/${formatBytes(h.bytesTotal)}`.padEnd(21), rate.padEnd(12), eta.padEnd(9), h.state].join('  ').trimEnd()
}

export interface ImageJson {
  id: string
  name: string
  sizeBytes: number
  storedBytes: number
  createdAtMs: number
  holders: Array<{ id: string, name: string }>
}

async function listCommand (client: ControlClient, json: boolean): Promise<string> {
  const [reply, members] = await Promise.all([client.call({ imageList: {} }), fetchMembers(client).catch(() => [])])
  const names = new Map(members.map((m) => [m.id, m.name]))
  const images: ImageJson[] = (reply.imageList?.images ?? []).map((i) => ({
    id: i.id ?? '',
    name: i.name ?? '',
    sizeBytes: Number(i.sizeBytes ?? 0),
    storedBytes: Number(i.storedBytes ?? 0),
    createdAtMs: Number(i.createdAtMs ?? 0),
    holders: (i.holders ?? []).map((b) => { const id = safePeerId(b); return { id, name: names.get(id) ?? id.slice(-8) } })
  }))
  if (json) return JSON.stringify(images, null, 2)
  if (images.length === 0) return 'no images; add one with "vmesh image add FILE"'
  const rows = [['NAME', 'ID', 'SIZE', 'STORED', 'HOLDERS'], ...images.map((i) => [i.name, i.id.slice(0, 12), formatBytes(i.sizeBytes), formatBytes(i.storedBytes), `${i.holders.length}: ${i.holders.map((h) => h.name).join(', ')}`])]
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? []
  return rows.map((r) => r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c] ?? 0)).join('  ')).join('\n')
}

/** One line per host and a summary; ok when every host that held the image dropped it. */
export function imageRemoveReport (r: vmesh.v1.IImageRemoveReply): { text: string, ok: boolean, json: unknown } {
  const hosts = (r.hosts ?? []).map((h) => ({ host: h.host ?? '', held: h.held === true, manifestRemoved: h.manifestRemoved === true, freedBytes: Number(h.freedBytes ?? 0), error: h.error ?? '', keptFor: h.keptFor ?? [] }))
  const held = hosts.filter((h) => h.held)
  const removed = held.filter((h) => h.manifestRemoved && h.error === '')
  const diskKept = (h: { keptFor: string[] }): string => h.keptFor.length === 0 ? '' : `; its disk file stays for ${h.keptFor.join(', ')} (deleted once they are destroyed)`
  const lines = hosts.map((h) => `${h.host.padEnd(16)} ${!h.held ? 'did not hold it' : h.manifestRemoved ? `removed, ${formatBytes(h.freedBytes)} freed${diskKept(h)}` : `kept: ${h.error}`}`)
  const what = `${r.name != null && r.name !== '' ? `${r.name} ` : ''}(${(r.id ?? '').slice(0, 12)})`
  lines.push(`image ${what} removed from ${removed.length} of ${held.length} host(s) that held it`)
  return { text: lines.join('\n') + '\n', ok: removed.length === held.length, json: { id: r.id ?? '', name: r.name ?? '', hosts } }
}

export function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  return `${(n / 1024 ** 3).toFixed(2)} GiB`
}

function safePeerId (bytes: Uint8Array | null | undefined): string {
  if (bytes == null || bytes.length === 0) return '?'
  return peerIdText(bytes) ?? Buffer.from(bytes).toString('hex')
}
