// The commands that read the cluster: members and stats. Each returns its output as text so the
// CLI prints it and the shell reuses it.
import type { ControlClient } from '@vmesh/agent'
import { memberJson, membersTable, summary } from './format.js'
import type { MemberJson } from './format.js'

export const STATUSES = ['alive', 'suspect', 'dead', 'left']

export async function fetchMembers (client: ControlClient): Promise<MemberJson[]> {
  const reply = await client.call({ members: {} })
  return (reply.members?.members ?? []).map(memberJson)
}

export function filterStatus (members: MemberJson[], status: string | undefined): MemberJson[] {
  if (status === undefined) return members
  const wanted = status.split(',').map((s) => s.trim())
  for (const s of wanted) if (!STATUSES.includes(s)) throw new Error(`unknown status "${s}": use one of ${STATUSES.join(', ')}`)
  return members.filter((m) => wanted.includes(m.status))
}

export async function membersCommand (client: ControlClient, opts: { json?: boolean, status?: string, color?: boolean }): Promise<string> {
  const members = filterStatus(await fetchMembers(client), opts.status)
  if (opts.json === true) return JSON.stringify(members, null, 2)
  if (members.length === 0) return opts.status !== undefined ? `no member is ${opts.status}` : 'no members'
  return `${membersTable(members, opts.color)}\n${members.length} host(s): ${summary(members)}`
}

export async function statsCommand (client: ControlClient, opts: { json?: boolean }): Promise<string> {
  const reply = await client.call({ stats: {} })
  const stats = reply.stats
  const counters = (stats?.counters ?? []).map((c) => ({ name: c.name ?? "", value: c.value ?? 0 }))
  if (opts.json === true) return JSON.stringify({ uptimeMs: stats?.uptimeMs ?? 0, counters: Object.fromEntries(counters.map((c) => [c.name, c.value])) }, null, 2)
  const width = Math.max(10, ...counters.map((c) => c.name.length))
  const lines = [`uptime ${Math.round((stats?.uptimeMs ?? 0) / 1000)}s`]
  for (const c of counters) lines.push(`${c.name.padEnd(width)}  ${c.value}`)
  return lines.join('\n')
}
