// Control API handlers for VMs. A request about a VM that runs on another host is forwarded to
// that host's agent, so every command works from any peer.
import type { Agent } from './agent.js'
import { sweepKeptFiles, withImageDisk } from './image-disk.js'
import { snapshotAndPush, snapshotReply } from './snapshot-push.js'
import { chooseTargets } from './image-handlers.js'
import { ControlError } from './control-server.js'
import type { ControlContext, ControlHandler, ControlReply } from './control-server.js'
import { forwardRequest } from './control-forward.js'
import { askAliveOthers, fansOut } from './host-call.js'
import { locateVm } from './vm-locate.js'
import type { vmesh } from '@vmesh/wire'
import type { VmInfo } from '@vmesh/hypervisor'
import type { PushTarget } from '@vmesh/swarm'

const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/
const LIMITS = { maxCpus: 64, minMemMiB: 64, maxMemMiB: 1024 * 1024, consoleMaxBytes: 1024 * 1024, consoleDefaultBytes: 64 * 1024 }

type VmHandlerKind = 'vmCreate' | 'vmList' | 'vmSnapshot' | 'vmDestroy' | 'vmHotplug' | 'vmConsole'

function checkName (name: string | null | undefined): string {
  const n = name ?? ''
  if (!VM_NAME_RE.test(n)) throw new ControlError('BAD_REQUEST', `VM name "${n.slice(0, 80)}" is not valid: use 1-63 lowercase letters, digits and "-", starting with a letter or digit`)
  return n
}

export function vmInfoMessage (agent: Agent, v: VmInfo): vmesh.v1.VmInfo.$Properties {
  return {
    name: v.name,
    host: agent.name,
    hostId: agent.node.peerId.toMultihash().bytes,
    state: v.state,
    source: v.sourceVm ?? v.source ?? '',
    cpus: v.cpus,
    memMib: v.memMiB,
    accel: v.accel,
    hostname: v.hostname,
    mac: v.mac ?? ''
  }
}

/**
 * Runs `local` when the VM is here; forwards the request when another host advertises it;
 * otherwise says it does not exist. Forwarded requests are never forwarded again.
 */
async function onVmHost (agent: Agent, ctx: ControlContext, vm: string, local: () => Promise<ControlReply>): Promise<ControlReply> {
  const where = locateVm(agent, vm)
  if (where?.local === true) return await local()
  if (where !== undefined && fansOut(agent, ctx)) {
    return await forwardRequest(agent.node, where.host.peerId, where.host.name, ctx.request, ctx)
  }
  throw new ControlError('NOT_FOUND', `no VM named "${vm}" in the cluster; "vmesh vms" lists them`)
}

/**
 * The Virtual Organization Cluster way: kill the clones' hypervisors and delete their overlays,
 * on every host, leaving the source and the snapshot layers alone. The request goes to every
 * alive host, which destroys its own clones: adverts may not list a clone started a moment ago.
 */
async function destroyClonesOf (agent: Agent, vm: string, ctx: ControlContext): Promise<ControlReply> {
  const destroyed: string[] = []
  const failed: string[] = []
  for (const v of agent.vms.local().filter((x) => (x.sourceVm ?? '') === vm)) {
    try {
      await agent.vms.exclusive(v.name, async () => { await agent.vms.driver.destroy(v.name) })
      destroyed.push(v.name)
    } catch (err) {
      failed.push(`${v.name} on ${agent.name}: ${(err as Error).message}`)
    }
  }
  if (destroyed.length > 0) await sweepKeptFiles(agent)
  if (!fansOut(agent, ctx)) return { vmDestroy: { destroyed, failed } }
  await askAliveOthers(agent, { vmDestroy: { vm, clonesOf: true } }, ctx.signal, (r) => {
    destroyed.push(...(r.vmDestroy?.destroyed ?? []))
    failed.push(...(r.vmDestroy?.failed ?? []))
  }, (host, err) => { failed.push(`${host}: ${err.message}`) })
  if (destroyed.length === 0 && failed.length === 0) throw new ControlError('NOT_FOUND', `no clones of "${vm}" in the cluster`)
  if (destroyed.length === 0) throw new ControlError('VM_ERROR', `could not destroy the clones of ${vm}:\n  ${failed.join('\n  ')}`)
  return { vmDestroy: { destroyed: destroyed.sort(), failed } }
}

function wrap (err: unknown): never {
  if (err instanceof ControlError) throw err
  throw new ControlError('VM_ERROR', (err as Error).message)
}

export function vmHandlers (agent: Agent): Record<VmHandlerKind, ControlHandler> {
  const vms = agent.vms
  return {
    vmCreate: async (ctx) => {
      const req = ctx.request.vmCreate as vmesh.v1.VmCreateRequest
      const name = checkName(req.name)
      const cpus = req.cpus === 0 ? 1 : req.cpus
      const memMiB = req.memMib === 0 ? 256 : req.memMib
      if (cpus < 1 || cpus > LIMITS.maxCpus) throw new ControlError('BAD_REQUEST', `--cpus ${cpus}: use 1 to ${LIMITS.maxCpus}`)
      if (memMiB < LIMITS.minMemMiB || memMiB > LIMITS.maxMemMiB) throw new ControlError('BAD_REQUEST', `--mem ${memMiB}: use ${LIMITS.minMemMiB} to ${LIMITS.maxMemMiB} MiB`)
      if (locateVm(agent, name) !== undefined) {
        throw new ControlError('EXISTS', `a VM named "${name}" already exists in the cluster; pick another name or "vmesh destroy ${name}"`)
      }
      const free = agent.membership.view.get(agent.membership.selfId)?.advert.resources?.memFreeMib ?? 0
      if (free > 0 && memMiB > free) throw new ControlError('NO_CAPACITY', `this host has ${free} MiB free; the VM needs ${memMiB} MiB`)
      const image = req.image ?? ''
      const t0 = Date.now()
      return await vms.exclusive(name, async () => {
        try {
          const fromFile = async (): Promise<VmInfo> => {
            const file = await vms.imageFile(image, agent.images)
            if (file === undefined) throw new ControlError('NOT_FOUND', `image "${image}" is neither an image in this host's store ("vmesh image ls") nor a file on host ${agent.name}`)
            return await vms.driver.create({ name, image: file, cpus, memMiB })
          }
          let vm: VmInfo
          if (image === '') vm = await vms.driver.create({ name, image: await vms.demoGuest(), cpus, memMiB })
          else {
            // An image's disk file: from writing it out until the VM's state names it, image rm keeps off.
            const id = agent.images.resolve(image)
            vm = id === undefined ? await fromFile() : await withImageDisk(agent, id, fromFile)
          }
          return { vmCreate: { vm: vmInfoMessage(agent, vm), elapsedMs: Date.now() - t0 } }
        } catch (err) { return wrap(err) }
      })
    },

    vmList: async () => {
      const out: vmesh.v1.VmInfo.$Properties[] = vms.local().map((v) => vmInfoMessage(agent, v))
      for (const e of agent.membership.view.others('alive', 'suspect')) {
        for (const v of e.advert.vms) {
          out.push({ name: v.name, host: e.advert.name, hostId: e.advert.peerId, state: v.state, source: v.source, cpus: v.cpus, memMib: v.memMib, accel: e.advert.resources?.accel ?? '' })
        }
      }
      return { vmList: { vms: out } }
    },

    vmSnapshot: async (ctx) => {
      const vm = checkName(ctx.request.vmSnapshot?.vm)
      const pushTo = ctx.request.vmSnapshot?.pushTo ?? ''
      if (pushTo !== '') {
        return await onVmHost(agent, ctx, vm, async () => {
          try { return await snapshotAndPush(agent, ctx, vm, pushTargets(agent, pushTo)) } catch (err) { return wrap(err) }
        })
      }
      return await onVmHost(agent, ctx, vm, async () => await vms.exclusive(vm, async () => {
        try {
          return { vmSnapshot: snapshotReply(await vms.snapshot(vm)) }
        } catch (err) { return wrap(err) }
      }))
    },

    vmDestroy: async (ctx) => {
      const vm = checkName(ctx.request.vmDestroy?.vm)
      if (ctx.request.vmDestroy?.clonesOf === true) return await destroyClonesOf(agent, vm, ctx)
      return await onVmHost(agent, ctx, vm, async () => await vms.exclusive(vm, async () => {
        try {
          await vms.driver.destroy(vm)
          await sweepKeptFiles(agent)
          return { vmDestroy: { destroyed: [vm] } }
        } catch (err) { return wrap(err) }
      }))
    },

    vmHotplug: async (ctx) => {
      const req = ctx.request.vmHotplug as vmesh.v1.VmHotplugRequest
      const vm = checkName(req.vm)
      if (req.cpus === 0 && req.memMib === 0) throw new ControlError('BAD_REQUEST', 'say what to add: --cpus N and/or --mem MiB (totals)')
      if (req.cpus > LIMITS.maxCpus || req.memMib > LIMITS.maxMemMiB) throw new ControlError('BAD_REQUEST', `at most ${LIMITS.maxCpus} vCPUs and ${LIMITS.maxMemMiB} MiB`)
      return await onVmHost(agent, ctx, vm, async () => await vms.exclusive(vm, async () => {
        try {
          const info = await vms.driver.hotplug(vm, { cpus: req.cpus === 0 ? undefined : req.cpus, memMiB: req.memMib === 0 ? undefined : req.memMib })
          return { vmHotplug: { vm: vmInfoMessage(agent, info) } }
        } catch (err) { return wrap(err) }
      }))
    },

    vmConsole: async (ctx) => {
      const req = ctx.request.vmConsole as vmesh.v1.VmConsoleRequest
      const vm = checkName(req.vm)
      const tail = Math.min(req.tailBytes === 0 ? LIMITS.consoleDefaultBytes : req.tailBytes, LIMITS.consoleMaxBytes)
      return await onVmHost(agent, ctx, vm, async () => {
        try {
          const text = await vms.driver.consoleLog(vm)
          return { vmConsole: { text: text.length > tail ? text.slice(text.length - tail) : text } }
        } catch (err) { return wrap(err) }
      })
    }
  }
}

/** A snapshot's push_to: peer ids of hosts in the cluster, never this one. */
function pushTargets (agent: Agent, spec: string): PushTarget[] {
  if (spec.length > 64 * 1024) throw new ControlError('BAD_REQUEST', 'push_to is too long')
  const targets = chooseTargets(agent, '', spec)
  if (targets.length === 0) throw new ControlError('BAD_REQUEST', 'push_to names no host but this one')
  return targets
}
