// The winner's side of a clone: start the clones from a snapshot's manifest, each with its own
// name, hostname, MAC and vmgenid. The request may come while the snapshot still arrives: then
// the clones' QEMUs start as soon as the small layers are here (disks, kernel, device state; the
// swarm sends them first) and wait, mapping the memory files, for the memory to complete, so a
// clone's start-up overlaps the transfer instead of following it.
import { isComplete } from '@vmesh/store'
import type { PreparedRestore, Snapshot } from '@vmesh/hypervisor'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { ControlError } from './control-server.js'
import type { ControlContext, ControlHandler } from './control-server.js'

const MAX_CLONES_PER_REQUEST = 64
const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/
/** While the snapshot arrives (and no assembly says when it is done): how often to look. */
const ARRIVAL_POLL_MS = 100
/** While a live push's manifest is on its way: how often to look. */
const SEAL_POLL_MS = 20

type CloneResult = vmesh.v1.CloneResult.$Properties

export function cloneRestoreHandler (agent: Agent): ControlHandler {
  return async (ctx) => {
    const req = ctx.request.cloneRestore as vmesh.v1.CloneRestoreRequest
    const id = req.manifestId
    if (!/^[0-9a-f]{64}$/.test(id)) throw new ControlError('BAD_REQUEST', 'clone restore needs a manifest id of 64 hex digits')
    if (req.names.length === 0 || req.names.length > MAX_CLONES_PER_REQUEST) throw new ControlError('BAD_REQUEST', `between 1 and ${MAX_CLONES_PER_REQUEST} clone names per host`)
    for (const n of req.names) if (!VM_NAME_RE.test(n)) throw new ControlError('BAD_REQUEST', `clone name "${n.slice(0, 80)}" is not valid`)
    try {
      return { cloneRestore: { clones: await restoreClones(agent, ctx, id, req.names) } }
    } finally {
      agent.releaseReservation?.(req.reservationId)
    }
  }
}

async function restoreClones (agent: Agent, ctx: ControlContext, id: string, names: string[]): Promise<CloneResult[]> {
  const t0 = Date.now()
  const progress = async (p: vmesh.v1.CloneProgress.$Properties): Promise<void> => { await ctx.send({ cloneProgress: { phase: 'restore', host: agent.name, ...p } }).catch(() => {}) }
  const early = await startWhileArriving(agent, ctx, id, names, progress)
  if (early !== undefined) return early
  await waitUntilHeld(agent, ctx, id)
  let snapshot: Snapshot
  try {
    snapshot = await agent.vms.snapshotFromManifest(id)
  } catch (err) {
    throw new ControlError('RESTORE_FAILED', `host ${agent.name} cannot use snapshot ${id.slice(0, 12)}: ${(err as Error).message}`)
  }
  await progress({ state: 'running', message: `${agent.name}: snapshot files ready in ${Date.now() - t0} ms, starting ${names.length} clone(s)` })
  return await startClones(agent, names, snapshot, Promise.resolve(true), t0, progress) as CloneResult[]
}

/**
 * The snapshot is still arriving here: start the clones' QEMUs now, finish them when it is
 * complete. Undefined when it is not arriving (the caller restores the usual way), or when it
 * stopped arriving (the prepared QEMUs are removed; the caller then waits, or says why not).
 */
async function startWhileArriving (agent: Agent, ctx: ControlContext, id: string, names: string[],
  progress: (p: vmesh.v1.CloneProgress.$Properties) => Promise<void>): Promise<CloneResult[] | undefined> {
  const t0 = Date.now()
  // Asked while a live push brings the snapshot: its manifest comes with the push's seal, which
  // the clone's coordinator may have heard of a moment before this host.
  while (agent.swarm.mayBringSoon(id) && !ctx.signal.aborted) await new Promise((resolve) => setTimeout(resolve, SEAL_POLL_MS))
  const arriving = await agent.vms.arrivingSnapshot(id).catch((err: Error) => {
    agent.log.warn(`clone restore: snapshot ${id.slice(0, 12)} could not be used before it arrived (${err.message}); waiting for all of it`)
    return undefined
  })
  if (arriving === undefined) return undefined
  await progress({ state: 'running', message: `${agent.name}: starting ${names.length} clone(s) while the snapshot's memory arrives` })
  const aborted = new Promise<boolean>((resolve) => {
    if (ctx.signal.aborted) resolve(false)
    ctx.signal.addEventListener('abort', () => resolve(false), { once: true })
  })
  const complete = Promise.race([arriving.complete, aborted])
  void complete.then(async (ok) => { if (ok) await progress({ state: 'running', message: `${agent.name}: snapshot complete ${Date.now() - t0} ms after its clones' QEMUs began starting` }) })
  return await startClones(agent, names, arriving.snapshot, complete, t0, progress)
}

/**
 * Restores the clones in parallel (most of a restore is waiting: QEMU loading device state, the
 * guest answering on its control channel): each QEMU starts at once and runs once `complete`
 * says the snapshot's files are whole. If it says they never will be, every prepared clone is
 * removed and the answer is undefined.
 */
async function startClones (agent: Agent, names: string[], snapshot: Snapshot, complete: Promise<boolean>, t0: number,
  progress: (p: vmesh.v1.CloneProgress.$Properties) => Promise<void>): Promise<CloneResult[] | undefined> {
  let incomplete = false
  const results = await Promise.all(names.map(async (name): Promise<CloneResult | undefined> => {
    let prepared: PreparedRestore
    try {
      prepared = await agent.vms.exclusive(name, async () => await agent.vms.driver.prepareRestore({ snapshot, name, hostname: name }))
    } catch (err) {
      // Files that vanished because the arriving snapshot's assembly failed are no reason to
      // fail the clone: the caller restores it from the store the usual way.
      if (!(await complete)) { incomplete = true; return undefined }
      return failed(agent, name, t0, err as Error)
    }
    if (!(await complete)) {
      incomplete = true
      await agent.vms.exclusive(name, async () => await agent.vms.driver.discardRestore(prepared)).catch(() => {})
      return undefined
    }
    try {
      return await finish(agent, prepared, t0, progress)
    } catch (err) {
      return failed(agent, name, t0, err as Error)
    }
  }))
  return incomplete ? undefined : results as CloneResult[]
}

async function finish (agent: Agent, prepared: PreparedRestore, t0: number, progress: (p: vmesh.v1.CloneProgress.$Properties) => Promise<void>): Promise<CloneResult> {
  const name = prepared.name
  const r = await agent.vms.exclusive(name, async () => await agent.vms.driver.finishRestore(prepared))
  await progress({ clone: name, state: 'done', message: `${name} running on ${agent.name} (restore ${r.restoreMs.toFixed(0)} ms, identity ${r.identityMs.toFixed(0)} ms)` })
  return { name, host: agent.name, state: 'running', ms: Date.now() - t0, hostname: r.vm.hostname, mac: r.vm.mac ?? '', restoreMs: r.restoreMs }
}

function failed (agent: Agent, name: string, t0: number, err: Error): CloneResult {
  return { name, host: agent.name, state: 'failed', ms: Date.now() - t0, error: err.message }
}

/** Returns once the store holds the manifest completely; throws if it does not and no transfer is bringing it. */
async function waitUntilHeld (agent: Agent, ctx: ControlContext, id: string): Promise<void> {
  for (;;) {
    if (!(await agent.manifests.has(id))) throw new ControlError('NOT_READY', `host ${agent.name} does not hold snapshot ${id.slice(0, 12)}`)
    if (isComplete(agent.store, await agent.manifests.load(id))) return
    if (!agent.swarm.isPulling(id)) throw new ControlError('NOT_READY', `host ${agent.name} has not received all of snapshot ${id.slice(0, 12)}, and no transfer is bringing it`)
    if (ctx.signal.aborted) throw new ControlError('CANCELLED', 'the clone was cancelled')
    await new Promise((resolve) => setTimeout(resolve, ARRIVAL_POLL_MS))
  }
}
