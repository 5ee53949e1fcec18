// `vmesh clone N VM` at any peer: find the source host, take a live snapshot there, elect where
// the clones go (with reservations), stream the snapshot from the source to the winners through
// the swarm, restore the clones on each winner, and re-place the clones of a winner that fails.
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { ControlError } from './control-server.js'
import type { ControlContext, ControlReply } from './control-server.js'
import { callHost } from './host-call.js'
import { locateVm } from './vm-locate.js'
import { latestSnapshotHere, newestOf } from './snapshot-handlers.js'
import { peerIdText } from '@vmesh/mesh'
import type { HostRef } from './host-call.js'

export const MAX_CLONES = 64
/** Rounds of election + transfer + restore before the command gives up on what is left. */
const MAX_ROUNDS = 3
const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/

/** What a clone needs from a host, for the election. */
export interface CloneTask {
  cpus: number
  memMiB: number
  /** Disk a clone's overlay may grow to, plus the snapshot bytes the host lacks (bid-side). */
  diskBytes: number
  manifestId: string
  accel?: string
}

export interface Assignment {
  host: HostRef
  count: number
  reservationId: string
}

export interface ElectionOutcome {
  assignments: Assignment[]
  /** Clones that could not be placed. */
  unplaced: number
  /** One line per host that refused or did not answer, for a person. */
  reasons: string[]
}

/** The placement election, as the pipeline sees it. */
export interface Elector {
  elect: (task: CloneTask, count: number, opts: { policy: 'spread' | 'pack', partial: boolean, exclude: Set<string>, signal: AbortSignal }) => Promise<ElectionOutcome>
  /** Frees a reservation the pipeline will not use (the transfer to that host failed). */
  release: (assignment: Assignment) => Promise<void>
}

/**
 * Names for new clones: the VM's name and a random 4-hex suffix (web-3f9a). Requests from
 * different peers run at the same time without talking to each other, so ordinal names
 * (web-1, web-2) would collide; random ones do not, and names already in the view are skipped.
 */
export function cloneNames (vm: string, count: number, taken: Set<string>, random: () => number = Math.random): string[] {
  if (vm.length > 58) throw new ControlError('BAD_REQUEST', `VM name "${vm}" is too long to name its clones (58 characters at most)`)
  const out: string[] = []
  while (out.length < count) {
    const name = `${vm}-${Math.floor(random() * 0x10000).toString(16).padStart(4, '0')}`
    if (!taken.has(name) && !out.includes(name)) out.push(name)
  }
  return out
}

function allVmNames (agent: Agent): Set<string> {
  const names = new Set(agent.vms.local().map((v) => v.name))
  for (const e of agent.membership.view.list()) for (const v of e.advert.vms) names.add(v.name ?? '')
  return names
}

interface PlannedHost { a: Assignment, names: string[] }

export async function runClone (agent: Agent, elector: Elector, ctx: ControlContext): Promise<ControlReply> {
  const req = ctx.request.clone as vmesh.v1.CloneRequest
  const t0 = Date.now()
  const vm = req.vm
  if (!VM_NAME_RE.test(vm)) throw new ControlError('BAD_REQUEST', `VM name "${vm.slice(0, 80)}" is not valid`)
  if (req.count < 1 || req.count > MAX_CLONES) throw new ControlError('BAD_REQUEST', `clone count ${req.count}: use 1 to ${MAX_CLONES}`)
  const policy = req.policy === '' ? 'spread' : req.policy
  if (policy !== 'spread' && policy !== 'pack') throw new ControlError('BAD_REQUEST', `--policy ${policy}: use spread or pack`)
  const source = locateVm(agent, vm)
  if (source === undefined) throw new ControlError('NOT_FOUND', `no running VM named "${vm}" in the cluster; "vmesh vms" lists them`)
  const progress = async (p: vmesh.v1.CloneProgress.$Properties): Promise<void> => { await ctx.send({ cloneProgress: p }).catch(() => {}) }
  const notes: string[] = []

  // The snapshot is taken after the election, streamed to the winners while it is taken (the
  // first round). Until it exists, bids count its size from the VM's memory, and what a host
  // lacks of it from the VM's last snapshot (its disks, kernel and much of its memory recur).
  const basis = await snapshotBasis(agent, source.host, vm, ctx.signal)
  let manifestId = ''
  let snapshotBytes = 0
  let pauseMs = 0
  const estimateBytes = source.memMiB * 1048576
  let pending = cloneNames(vm, req.count, allVmNames(agent))
  const results: vmesh.v1.CloneResult.$Properties[] = []
  const exclude = new Set<string>()
  let egress = 0
  let transferMs = 0

  for (let round = 1; round <= MAX_ROUNDS && pending.length > 0 && !ctx.signal.aborted; round++) {
    // 1. Election with reservations.
    const task: CloneTask = manifestId === ''
      ? { cpus: source.cpus, memMiB: source.memMiB, diskBytes: estimateBytes, manifestId: basis }
      : { cpus: source.cpus, memMiB: source.memMiB, diskBytes: snapshotBytes, manifestId }
    await progress({ phase: round === 1 ? 'elect' : 'replan', state: 'running', message: `electing hosts for ${pending.length} clone(s)` })
    const election = await elector.elect(task, pending.length, { policy, partial: req.partial || round > 1, exclude, signal: ctx.signal })
    notes.push(...election.reasons)
    if (election.assignments.length === 0 || (election.unplaced > 0 && !req.partial && round === 1)) {
      for (const a of election.assignments) await elector.release(a).catch(() => {})
      if (round === 1) {
        throw new ControlError('NO_CAPACITY', `the cluster cannot take ${pending.length} clone(s) of ${vm} (${source.cpus} vCPU, ${source.memMiB} MiB):\n  ${election.reasons.join('\n  ') || 'no candidate host'}\nuse --partial to place as many as fit`)
      }
      break
    }
    const plan: PlannedHost[] = election.assignments.map((a) => ({ a, names: pending.splice(0, a.count) }))
    for (const p of plan) await progress({ phase: 'reserve', host: p.a.host.name, state: 'done', message: `${p.a.host.name}: reserved ${p.a.count} clone(s)` })

    // 2. Restore on each winner: the source host once the snapshot exists, the others the moment
    // their transfer begins (a winner starts its clones' QEMUs on the snapshot's small layers,
    // which come first, and runs them once the memory is complete; see clone-restore.ts). A
    // winner whose transfer or restore fails has its clones put back in the queue for the next round.
    const restores: Array<Promise<void>> = []
    const started = new Set<PlannedHost>()
    const transferring = new Set<PlannedHost>()
    const restoreOn = (p: PlannedHost): void => {
      if (started.has(p) || manifestId === '') return
      started.add(p)
      restores.push((async () => {
        const { a, names } = p
        try {
          const reply = await callHost(agent, a.host, { cloneRestore: { manifestId, names, reservationId: a.reservationId } }, {
            signal: ctx.signal,
            onProgress: (r) => { if (r.cloneProgress != null) void progress(r.cloneProgress) }
          })
          for (const c of reply.cloneRestore?.clones ?? []) {
            results.push({ ...c, ms: Date.now() - t0 })
            if (c.state !== 'running') notes.push(`${c.name ?? ''} on ${a.host.name} failed to start: ${c.error ?? ''}`)
          }
        } catch (err) {
          exclude.add(a.host.peerId.toString())
          pending.push(...names)
          notes.push(`${a.host.name}: restore failed (${(err as Error).message}); its ${names.length} clone(s) re-placed`)
        }
      })())
    }
    const isSource = (p: PlannedHost): boolean => p.a.host.peerId.equals(source.host.peerId)
    const receivers = plan.filter((p) => !isSource(p))
    const byPeer = new Map(receivers.map((p) => [p.a.host.peerId.toString(), p]))
    const onTransfer = (t: vmesh.v1.ITransferProgress): void => {
      void progress({ phase: 'transfer', host: t.hostName, state: t.state, bytesDone: t.bytesDone, bytesTotal: t.bytesTotal, rateBytesPerS: t.rateBytesPerS, etaMs: t.etaMs })
      const p = t.state === 'transferring' || t.state === 'done' ? byPeer.get(peerIdText(t.host) ?? '') : undefined
      if (p !== undefined) { transferring.add(p); restoreOn(p) }
    }
    const snapshotReady = (snap: vmesh.v1.IVmSnapshotReply): void => {
      if (manifestId !== '' || snap.manifestId == null || snap.manifestId === '') return
      manifestId = snap.manifestId
      snapshotBytes = (snap.layers ?? []).reduce((n, l) => n + Number(l.size ?? 0), 0)
      pauseMs = snap.pauseMs ?? 0
      void progress({ phase: 'snapshot', host: source.host.name, state: 'done', message: `snapshot ${manifestId.slice(0, 12)}: ${(snapshotBytes / 1048576).toFixed(0)} MiB, source paused ${pauseMs.toFixed(1)} ms` })
      for (const p of plan) if (isSource(p) || transferring.has(p)) restoreOn(p)
    }

    // 3. Transfer from the source to every other winner at once (the swarm makes it one upload):
    // in the first round while the snapshot is taken, after that the snapshot as it is.
    const tTransfer = Date.now()
    const hosts = receivers.map((p) => p.a.host.peerId.toString()).join(',')
    let push: vmesh.v1.IImagePushReply | null | undefined
    if (manifestId === '') {
      await progress({ phase: 'snapshot', host: source.host.name, state: 'running', message: `snapshotting ${vm} on ${source.host.name}${receivers.length > 0 ? `, streaming it to ${receivers.length} host(s) as it is taken` : ''}` })
      let snap: vmesh.v1.IVmSnapshotReply | null | undefined
      try {
        snap = (await callHost(agent, source.host, { vmSnapshot: { vm, pushTo: hosts } }, {
          signal: ctx.signal,
          onProgress: (r) => {
            if (r.vmSnapshot != null) snapshotReady(r.vmSnapshot)
            if (r.transferProgress != null) onTransfer(r.transferProgress)
          }
        })).vmSnapshot
      } catch (err) {
        for (const p of plan) if (!started.has(p)) await elector.release(p.a).catch(() => {})
        await Promise.all(restores)
        throw new ControlError('SNAPSHOT_FAILED', `snapshot of ${vm} on ${source.host.name} failed: ${(err as Error).message}`)
      }
      if (snap == null || (snap.manifestId ?? '') === '') throw new ControlError('SNAPSHOT_FAILED', `${source.host.name} returned no snapshot`)
      snapshotReady(snap)
      push = receivers.length > 0 ? snap.push : undefined
    } else if (receivers.length > 0) {
      push = (await callHost(agent, source.host, { imagePush: { ref: manifestId, hosts } }, {
        signal: ctx.signal,
        onProgress: (r) => { if (r.transferProgress != null) onTransfer(r.transferProgress) }
      })).imagePush
    }
    transferMs += Date.now() - tTransfer
    egress += Number(push?.sourceEgressBytes ?? 0)
    const failed = new Map<string, string>()
    for (const h of push?.hosts ?? []) if (h.state !== 'done') failed.set(peerIdText(h.host) ?? '', h.error != null && h.error !== '' ? h.error : (h.state ?? 'failed'))
    for (const p of plan) if (isSource(p)) restoreOn(p)
    for (const p of receivers) {
      const why = failed.get(p.a.host.peerId.toString())
      if (why === undefined) { restoreOn(p); continue }
      // A restore already asked for fails on its own (the snapshot never completes there) and
      // re-places its clones; a winner that got it after all runs them.
      if (started.has(p)) { notes.push(`${p.a.host.name}: transfer failed (${why})`); continue }
      exclude.add(p.a.host.peerId.toString())
      pending.push(...p.names)
      notes.push(`${p.a.host.name}: transfer failed (${why}); its ${p.names.length} clone(s) re-placed`)
      await elector.release(p.a).catch(() => {})
    }
    await Promise.all(restores)
  }
  for (const name of pending) results.push({ name, host: '', state: 'failed', error: 'not placed', ms: Date.now() - t0 })
  await progress({ phase: 'done', state: 'done', message: `${results.filter((r) => r.state === 'running').length} of ${req.count} clone(s) running` })
  return {
    clone: {
      source: vm,
      sourceHost: source.host.name,
      manifestId,
      clones: results,
      notes,
      elapsedMs: Date.now() - t0,
      sourcePauseMs: pauseMs,
      snapshotBytes,
      sourceEgressBytes: egress,
      transferMs
    }
  }
}

/** How long the clone waits to learn the VM's last snapshot before electing without it. */
const BASIS_TIMEOUT_MS = 1000

/** The newest snapshot of `vm` its host holds, '' if none or if the host does not say in time. */
async function snapshotBasis (agent: Agent, host: HostRef, vm: string, signal: AbortSignal): Promise<string> {
  try {
    if (host.peerId.toString() === agent.membership.selfId) return await latestSnapshotHere(agent, vm)
    const r = await callHost(agent, host, { snapshotList: {} }, { signal: AbortSignal.any([signal, AbortSignal.timeout(BASIS_TIMEOUT_MS)]) })
    return newestOf(r.snapshotList?.snapshots ?? [], vm, host.name)
  } catch {
    return ''
  }
}
