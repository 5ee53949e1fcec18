// Where a VM runs: this host (from the driver) or another alive host (from its advert).
import type { Agent } from './agent.js'
import type { HostRef } from './host-call.js'

export interface VmLocation {
  host: HostRef
  /** True when the VM runs on this agent's host. */
  local: boolean
  cpus: number
  memMiB: number
}

export function locateVm (agent: Agent, vm: string): VmLocation | undefined {
  const mine = agent.vms.local().find((v) => v.name === vm)
  if (mine !== undefined) return { host: { peerId: agent.node.peerId, name: agent.name }, local: true, cpus: mine.cpus, memMiB: mine.memMiB }
  for (const e of agent.membership.view.others('alive')) {
    const v = e.advert.vms.find((x) => x.name === vm)
    if (v !== undefined) return { host: { peerId: e.peerId, name: e.advert.name }, local: false, cpus: v.cpus ?? 1, memMiB: v.memMib ?? 0 }
  }
  return undefined
}
