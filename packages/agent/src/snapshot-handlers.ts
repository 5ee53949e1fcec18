// `vmesh snapshot ls` and `snapshot rm` on the agent. Asked by the CLI, an agent asks every alive
// host (itself directly) and merges the answers; asked by another member, it answers for itself.
// What a host holds of a snapshot: its manifest and chunks in the store, the files materialised
// from it (<data-dir>/snapshots/m-<id16>/), and on the source host the driver's own snapshot
// directory (<data-dir>/snapshots/<snapshot id>/). A VM whose disk chain or RAM uses a file of
// those directories keeps them (the driver refuses too); `--force` still drops the manifest.
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { isComplete, isHash, manifestStoredBytes } from '@vmesh/store'
import type { Agent } from './agent.js'
import type { ControlContext, ControlHandler } from './control-server.js'
import { ControlError } from './control-server.js'
import { askAliveOthers, fansOut } from './host-call.js'
import type { vmesh } from '@vmesh/wire'
import { assemblyDirName, COMPLETE_FILE, LOCAL_MANIFEST_FILE, parseVmSpec } from './vm-service.js'
import {
  checkHostResult, checkRemoveRequest, checkSnapshotList, isSnapshotId, mergeSnapshotLists, parseSnapshotName, resolveSnapshotRef, usersOf
} from './snapshot-catalog.js'
import type { HostResult, SnapshotEntry } from './snapshot-catalog.js'
import { markRemoved, vmFiles, type VmFiles } from './snapshot-sweep.js'

/** How long a host may take to list its snapshots, and to remove one (files, manifest, chunk GC). */
const LIST_TIMEOUT_MS = 15_000
const REMOVE_TIMEOUT_MS = 120_000

/** One snapshot as this host holds it, with the directories of it that are here. */
interface LocalSnapshot {
  entry: SnapshotEntry
  dirs: string[]
  hasManifest: boolean
}

async function isDir (path: string): Promise<boolean> {
  return await stat(path).then((st) => st.isDirectory(), () => false)
}

/** Bytes a directory takes on disk (allocated blocks: the layer files are sparse). */
async function diskUsage (dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name)
    if (e.isDirectory()) total += await diskUsage(p)
    else total += await stat(p).then((st) => st.blocks * 512, () => 0)
  }
  return total
}

/** The snapshot's source and id from the vm-spec file of a materialised directory. */
async function specOfDir (dir: string): Promise<{ sourceVm: string, snapshotId: string }> {
  const file = (await readdir(dir).catch(() => [] as string[])).find((n) => n.endsWith('-vm-spec'))
  if (file === undefined) return { sourceVm: '', snapshotId: '' }
  try {
    const spec = parseVmSpec(await readFile(join(dir, file), 'utf8'))
    return { sourceVm: spec.source, snapshotId: spec.snapshotId }
  } catch { return { sourceVm: '', snapshotId: '' } }
}

/** What this host holds of every VM snapshot: manifests, and directories whose manifest is gone. */
async function localSnapshots (agent: Agent, vms: VmFiles[]): Promise<LocalSnapshot[]> {
  const root = resolve(agent.vms.snapshotsDir())
  const images = new Set(agent.images.list().map((e) => e.id))
  const found = new Map<string, LocalSnapshot>()
  const blank = (manifestId: string, names: { sourceVm: string, snapshotId: string }, createdAtMs: number): LocalSnapshot => ({
    entry: { manifestId, ...names, createdAtMs, storedBytes: 0, holders: [], partial: [agent.name], users: [] },
    dirs: [],
    hasManifest: false
  })
  for (const id of await agent.manifests.list()) {
    if (images.has(id)) continue
    const m = await agent.manifests.load(id).catch(() => undefined)
    if (m === undefined || !m.layers.some((l) => l.kind === 'vm-spec')) continue
    const s = blank(id, parseSnapshotName(m.name) ?? { sourceVm: '', snapshotId: '' }, m.createdAtMs)
    s.hasManifest = true
    s.entry.storedBytes = manifestStoredBytes(m)
    if (isComplete(agent.store, m)) { s.entry.holders = [agent.name]; s.entry.partial = [] }
    found.set(id, s)
  }
  for (const name of (await readdir(root).catch(() => [] as string[])).sort()) {
    const dir = join(root, name)
    if (!isSnapshotId(name) || !(await isDir(dir))) continue
    if (name.startsWith('m-')) {
      // Materialised from a manifest: .complete names it; a half-assembled one matches by prefix.
      const marker = (await readFile(join(dir, COMPLETE_FILE), 'utf8').catch(() => '')).trim()
      const id = isHash(marker) ? marker : [...found.keys()].find((k) => name === assemblyDirName(k))
      if (id === undefined || name !== assemblyDirName(id)) continue
      const s = found.get(id) ?? blank(id, await specOfDir(dir), 0)
      s.dirs.push(dir)
      found.set(id, s)
      continue
    }
    // The driver's own snapshot: matched by its id, or by the manifest id written beside it.
    const marker = (await readFile(join(dir, LOCAL_MANIFEST_FILE), 'utf8').catch(() => '')).trim()
    const owner = [...found.values()].find((s) => isHash(marker) ? s.entry.manifestId === marker : s.entry.snapshotId === name)
    if (owner !== undefined) owner.dirs.push(dir)
    else if (isHash(marker)) {
      const snap = await agent.vms.driver.loadSnapshot(name).catch(() => undefined)
      const s = blank(marker, { sourceVm: snap?.source ?? '', snapshotId: name }, Date.parse(snap?.createdAt ?? '') || 0)
      s.dirs.push(dir)
      found.set(marker, s)
    }
  }
  for (const s of found.values()) {
    s.entry.users = usersOf(vms, s.dirs).map((vm) => ({ vm, host: agent.name, source: vm === s.entry.sourceVm }))
  }
  return [...found.values()]
}

/** Drops what this host holds of one snapshot, unless its VMs use it (then only with force, and only the manifest). */
async function removeHere (agent: Agent, manifestId: string, force: boolean): Promise<HostResult> {
  const result: HostResult = { host: agent.name, held: false, freedBytes: 0, inUseBy: [], manifestRemoved: false, error: '' }
  try {
    const vms = await vmFiles(agent)
    const s = (await localSnapshots(agent, vms)).find((x) => x.entry.manifestId === manifestId)
    if (s === undefined) return result
    result.held = true
    if (agent.swarm.isPulling(manifestId)) {
      // Its manifest and chunks are what the transfer fills; removing them would strand it.
      result.error = `${agent.name} is receiving this snapshot right now; remove it once the transfer (or the clone) is over`
      return result
    }
    result.inUseBy = s.entry.users.map((u) => u.vm)
    if (result.inUseBy.length > 0 && !force) return result
    for (const dir of s.dirs) {
      if (usersOf(vms, [dir]).length > 0) {
        // Kept for the VMs that use it; deleted after the last of them is destroyed.
        await markRemoved(dir)
        continue
      }
      const bytes = await diskUsage(dir)
      // The driver checks again that no VM uses the directory; a clone restored a moment ago stops it.
      await agent.vms.driver.deleteSnapshot(basename(dir))
      result.freedBytes += bytes
    }
    if (s.hasManifest) {
      await agent.manifests.delete(manifestId)
      agent.completeManifests = agent.completeManifests.filter((id) => id !== manifestId)
      agent.membership.advertiseSoon()
    }
    result.manifestRemoved = true
    result.freedBytes += (await agent.collector.run(`snapshot rm ${manifestId.slice(0, 12)}`)).deletedBytes
    agent.log.info(`snapshot ${manifestId.slice(0, 12)} removed here: ${result.freedBytes} bytes freed${result.inUseBy.length > 0 ? `; files kept for ${result.inUseBy.join(', ')}` : ''}`)
  } catch (err) {
    result.error = (err as Error).message
  }
  return result
}

/** Every alive host's list (this host's directly), merged; hosts that fail are named, not fatal. */
async function clusterSnapshots (agent: Agent, ctx: ControlContext): Promise<{ snapshots: SnapshotEntry[], failed: string[] }> {
  const lists = [(await localSnapshots(agent, await vmFiles(agent))).map((s) => s.entry)]
  const failed: string[] = []
  await askAliveOthers(agent, { snapshotList: {} }, AbortSignal.any([ctx.signal, AbortSignal.timeout(LIST_TIMEOUT_MS)]), (r, host) => {
    lists.push(checkSnapshotList(r.snapshotList?.snapshots, host))
  }, (host, err) => {
    if (!(err instanceof ControlError)) agent.membership.counters.inc('snapshot.rejected.list')
    failed.push(`${host}: ${err.message}`)
  })
  return { snapshots: mergeSnapshotLists(lists), failed: failed.sort() }
}

/** The newest snapshot of `vm` this host holds completely (its manifest id), or '' if none. */
export async function latestSnapshotHere (agent: Agent, vm: string): Promise<string> {
  return newestOf((await localSnapshots(agent, await vmFiles(agent))).map((s) => s.entry), vm, agent.name)
}

export function newestOf (snapshots: vmesh.v1.ISnapshotInfo[], vm: string, host: string): string {
  const held = snapshots.filter((s) => s.sourceVm === vm && (s.holders ?? []).includes(host))
  held.sort((a, b) => Number(b.createdAtMs ?? 0) - Number(a.createdAtMs ?? 0))
  return held[0]?.manifestId ?? ''
}

export function snapshotHandlers (agent: Agent): Record<'snapshotList' | 'snapshotRemove', ControlHandler> {
  return {
    snapshotList: async (ctx) => {
      if (!fansOut(agent, ctx)) return { snapshotList: { snapshots: (await localSnapshots(agent, await vmFiles(agent))).map((s) => s.entry) } }
      return { snapshotList: await clusterSnapshots(agent, ctx) }
    },

    snapshotRemove: async (ctx) => {
      const fanOut = fansOut(agent, ctx)
      const { ref, force } = checkRemoveRequest(ctx.request.snapshotRemove, fanOut)
      if (!fanOut) return { snapshotRemove: { manifestId: ref, hosts: [await removeHere(agent, ref, force)] } }
      const { snapshots, failed } = await clusterSnapshots(agent, ctx)
      const id = resolveSnapshotRef(ref, snapshots)
      const snap = snapshots.find((s) => s.manifestId === id)
      if (snap === undefined) throw new ControlError('NOT_FOUND', `no host holds snapshot ${id.slice(0, 12)}${failed.length > 0 ? ` (no answer from ${failed.join('; ')})` : ''}`)
      const results = [await removeHere(agent, id, force)]
      await askAliveOthers(agent, { snapshotRemove: { ref: id, force } }, AbortSignal.any([ctx.signal, AbortSignal.timeout(REMOVE_TIMEOUT_MS)]), (r, host) => {
        results.push(checkHostResult(r.snapshotRemove?.hosts?.[0], host))
      }, (host, err) => {
        if (!(err instanceof ControlError)) agent.membership.counters.inc('snapshot.rejected.remove')
        results.push({ host, held: true, freedBytes: 0, inUseBy: [], manifestRemoved: false, error: err.message })
      })
      return { snapshotRemove: { manifestId: id, sourceVm: snap.sourceVm, hosts: results.sort((a, b) => a.host.localeCompare(b.host)) } }
    }
  }
}
