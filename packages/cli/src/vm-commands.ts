// `vmesh create | vms | snapshot | destroy | hotplug | console`: VMs from any host.
import { parseArgs } from 'node:util'
import type { ControlClient } from '@vmesh/agent'
import type { vmesh } from '@vmesh/wire'
import { targetOptionSpec } from './options.js'
import type { TargetOptions } from './options.js'

export const vmUsage = `  vmesh create NAME [--image ID|NAME|FILE] [--cpus N] [--mem MiB]   start a VM from an image in the store, a file, or the demo guest (built on first use)
  vmesh vms [--json]                         every VM in the cluster: name, host, state, source, cpus, memory, accelerator
  vmesh snapshot VM [--json]                 live copy-on-write snapshot into the chunk store (the VM keeps running)
  vmesh destroy VM                           kill its QEMU and delete its overlays, on whichever host runs it
  vmesh destroy --clones-of VM               destroy every clone of VM in the cluster (the source stays)
  vmesh hotplug VM [--cpus N] [--mem MiB]    grow a running VM to N vCPUs / MiB of memory
  vmesh console VM [--bytes N]               the VM's serial console log (last 64 KiB by default)
`

interface Parsed { values: TargetOptions & Record<string, string | boolean | undefined>, positionals: string[] }

export function parseVmArgs (command: string, args: string[]): Parsed {
  const extra: Record<string, { type: 'string' | 'boolean' }> = {
    create: { image: { type: 'string' }, cpus: { type: 'string' }, mem: { type: 'string' } },
    vms: { json: { type: 'boolean' } },
    snapshot: { json: { type: 'boolean' } },
    destroy: { 'clones-of': { type: 'boolean' } },
    hotplug: { cpus: { type: 'string' }, mem: { type: 'string' } },
    console: { bytes: { type: 'string' } }
  }[command] as Record<string, { type: 'string' | 'boolean' }>
  const { values, positionals } = parseArgs({ args, options: { ...targetOptionSpec, ...extra }, allowPositionals: true, strict: true })
  return { values: values as Parsed['values'], positionals }
}

function count (flag: string, v: string | boolean | undefined): number {
  if (v === undefined) return 0
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0 || n > 1e7) throw new Error(`--${flag} ${String(v)}: give a positive whole number`)
  return n
}

function oneVm (command: string, positionals: string[]): string {
  if (positionals.length !== 1) throw new Error(`usage: vmesh ${command} VM (run "vmesh help")`)
  return positionals[0] as string
}

export function vmsTable (vms: vmesh.v1.IVmInfo[]): string {
  if (vms.length === 0) return 'no VMs in the cluster; start one with "vmesh create NAME"'
  const header = ['NAME', 'HOST', 'STATE', 'SOURCE', 'CPUS', 'MEM', 'ACCEL']
  const rows = [...vms].sort((a, b) => (a.name ?? '').localeCompare(b.name ?? '')).map((v) => [
    v.name ?? '', v.host ?? '', v.state ?? '', v.source !== '' && v.source != null ? v.source : '-', String(v.cpus ?? 0), `${v.memMib ?? 0} MiB`, v.accel ?? ''
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)))
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n')
}

export async function runVmCommand (command: string, parsed: Parsed, client: ControlClient): Promise<string> {
  const { values, positionals } = parsed
  switch (command) {
    case 'create': {
      const name = oneVm(command, positionals)
      const reply = await client.call({ vmCreate: { name, image: (values.image as string | undefined) ?? '', cpus: count('cpus', values.cpus), memMib: count('mem', values.mem) } })
      const vm = reply.vmCreate?.vm
      return `created ${vm?.name ?? name} on ${vm?.host ?? '?'}: ${vm?.cpus ?? 0} vCPU, ${vm?.memMib ?? 0} MiB, ${vm?.accel ?? ''}, MAC ${vm?.mac ?? ''} (${reply.vmCreate?.elapsedMs ?? 0} ms)`
    }
    case 'vms': {
      if (positionals.length > 0) throw new Error('usage: vmesh vms [--json]')
      const vms = (await client.call({ vmList: {} })).vmList?.vms ?? []
      if (values.json === true) return JSON.stringify(vms.map((v) => ({ name: v.name, host: v.host, state: v.state, source: v.source, cpus: v.cpus, memMiB: v.memMib, accel: v.accel })), null, 2)
      return vmsTable(vms)
    }
    case 'snapshot': {
      const vm = oneVm(command, positionals)
      const s = (await client.call({ vmSnapshot: { vm } })).vmSnapshot
      if (values.json === true) return JSON.stringify({ snapshotId: s?.snapshotId, manifestId: s?.manifestId, pauseMs: s?.pauseMs, downtimeMs: s?.downtimeMs, totalMs: s?.totalMs, layers: (s?.layers ?? []).map((l) => ({ kind: l.kind, size: Number(l.size) })) }, null, 2)
      const size = (s?.layers ?? []).reduce((t, l) => t + Number(l.size ?? 0), 0)
      return `snapshot ${s?.snapshotId ?? ''} of ${vm}: manifest ${s?.manifestId ?? ''}, ${(s?.layers ?? []).length} layers, ${(size / 1048576).toFixed(1)} MiB; source paused ${(s?.pauseMs ?? 0).toFixed(1)} ms (QEMU downtime ${(s?.downtimeMs ?? 0).toFixed(1)} ms), total ${((s?.totalMs ?? 0) / 1000).toFixed(2)} s`
    }
    case 'destroy': {
      const vm = oneVm(command, positionals)
      const r = (await client.call({ vmDestroy: { vm, clonesOf: values['clones-of'] === true } })).vmDestroy
      const lines = [`destroyed ${(r?.destroyed ?? []).join(', ')}`]
      for (const f of r?.failed ?? []) lines.push(`failed: ${f}`)
      return lines.join('\n')
    }
    case 'hotplug': {
      const vm = oneVm(command, positionals)
      const v = (await client.call({ vmHotplug: { vm, cpus: count('cpus', values.cpus), memMib: count('mem', values.mem) } })).vmHotplug?.vm
      return `${vm} now has ${v?.cpus ?? 0} vCPU and ${v?.memMib ?? 0} MiB`
    }
    case 'console': {
      const vm = oneVm(command, positionals)
      return (await client.call({ vmConsole: { vm, tailBytes: count('bytes', values.bytes) } })).vmConsole?.text ?? ''
    }
    default:
      throw new Error(`unknown VM command ${command}`)
  }
}
