// The winner's side of a clone: once this host holds the snapshot's manifest completely, start
// the clones from it, each with its own name, hostname, MAC and vmgenid.
import { isComplete } from '@vmesh/store'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { ControlError } from './control-server.js'
import type { ControlHandler } from './control-server.js'

const MAX_CLONES_PER_REQUEST = 64
const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/

export function cloneRestoreHandler (agent: Agent): ControlHandler {
  return async (ctx) => {
    const req = ctx.request.cloneRestore as vmesh.v1.CloneRestoreRequest
    const id = req.manifestId
    if (!/^[0-9a-f]{64}$/.test(id)) throw new ControlError('BAD_REQUEST', 'clone restore needs a manifest id of 64 hex digits')
    if (req.names.length === 0 || req.names.length > MAX_CLONES_PER_REQUEST) throw new ControlError('BAD_REQUEST', `between 1 and ${MAX_CLONES_PER_REQUEST} clone names per host`)
    for (const n of req.names) if (!VM_NAME_RE.test(n)) throw new ControlError('BAD_REQUEST', `clone name "${n.slice(0, 80)}" is not valid`)
    if (!(await agent.manifests.has(id))) throw new ControlError('NOT_READY', `host ${agent.name} does not hold snapshot ${id.slice(0, 12)}`)
    const manifest = await agent.manifests.load(id)
    if (!isComplete(agent.store, manifest)) throw new ControlError('NOT_READY', `host ${agent.name} has not received all of snapshot ${id.slice(0, 12)} yet`)
    const t0 = Date.now()
    let snapshot
    try {
      snapshot = await agent.vms.snapshotFromManifest(id)
    } catch (err) {
      throw new ControlError('RESTORE_FAILED', `host ${agent.name} cannot use snapshot ${id.slice(0, 12)}: ${(err as Error).message}`)
    }
    await ctx.send({ cloneProgress: { phase: 'restore', host: agent.name, state: 'running', message: `${agent.name}: snapshot files ready in ${Date.now() - t0} ms, starting ${req.names.length} clone(s)` } })
    // In parallel: most of a restore is waiting (QEMU loading device state, the guest answering
    // on its control channel), so clones on one host start together rather than in a queue.
    const clones: vmesh.v1.CloneResult.$Properties[] = await Promise.all(req.names.map(async (name) => {
      try {
        const r = await agent.vms.exclusive(name, async () => await agent.vms.driver.restore({ snapshot, name, hostname: name }))
        await ctx.send({ cloneProgress: { phase: 'restore', host: agent.name, clone: name, state: 'done', message: `${name} running on ${agent.name} (restore ${r.restoreMs.toFixed(0)} ms, identity ${r.identityMs.toFixed(0)} ms)` } })
        return { name, host: agent.name, state: 'running', ms: Date.now() - t0, hostname: r.vm.hostname, mac: r.vm.mac ?? '', restoreMs: r.restoreMs }
      } catch (err) {
        return { name, host: agent.name, state: 'failed', ms: Date.now() - t0, error: (err as Error).message }
      }
    }))
    agent.releaseReservation?.(req.reservationId)
    return { cloneRestore: { clones } }
  }
}
