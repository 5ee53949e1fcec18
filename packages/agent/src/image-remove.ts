// `vmesh image rm`: every alive host drops its copy of an image (the manifest, its name here, and
// the chunks no other manifest uses), as `vmesh snapshot rm` does for snapshots. A host keeps the
// image while it is sending or receiving it, and says so; VM snapshots go by `snapshot rm`, which
// knows which VMs use their files. The image's disk file (vmesh create --image) goes too, unless
// VMs here are based on it (image-disk.ts).
import { isHash } from '@vmesh/store'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { ControlError, type ControlContext, type ControlHandler } from './control-server.js'
import { askAliveOthers, fansOut } from './host-call.js'
import { removeImageDisk } from './image-disk.js'
import { names, VM_NAME_RE } from './snapshot-catalog.js'

/** A host that has not answered by then is reported as failed (its GC may be slow on a big store). */
const REMOVE_TIMEOUT_MS = 120_000
const MAX_ERROR_CHARS = 1000

export interface ImageHostResult {
  host: string
  held: boolean
  manifestRemoved: boolean
  freedBytes: number
  error: string
  /** VMs on the host based on the image's disk file, which stays for them. */
  keptFor: string[]
}

/**
 * Asked by a person (the local socket or a client outside the cluster): resolve the reference
 * here and ask every alive host. Asked by a member (its fan-out): only this host, by full id.
 */
export function imageRemoveHandler (agent: Agent, resolveImage: (ref: string) => Promise<string>): ControlHandler {
  return async (ctx: ControlContext) => {
    const ref = ctx.request.imageRemove?.ref ?? ''
    if (!fansOut(agent, ctx)) {
      if (!isHash(ref)) throw new ControlError('BAD_REQUEST', 'between hosts, image rm names the full manifest id')
      return { imageRemove: { id: ref, hosts: [await removeImageHere(agent, ref)] } }
    }
    // A full id needs no name here: the image may be held only elsewhere.
    const id = isHash(ref) ? ref : await resolveImage(ref)
    const name = agent.images.list().find((e) => e.id === id)?.name ?? ''
    const results = [await removeImageHere(agent, id)]
    await askAliveOthers(agent, { imageRemove: { ref: id } }, AbortSignal.any([ctx.signal, AbortSignal.timeout(REMOVE_TIMEOUT_MS)]), (r, host) => {
      results.push(checkImageHostResult(r.imageRemove?.hosts?.[0], host))
    }, (host, err) => {
      if (!(err instanceof ControlError)) agent.membership.counters.inc('image.rejected.remove')
      results.push({ host, held: true, manifestRemoved: false, freedBytes: 0, error: err.message.slice(0, MAX_ERROR_CHARS), keptFor: [] })
    })
    if (results.every((r) => !r.held)) throw new ControlError('NOT_FOUND', `no alive host holds image ${id.slice(0, 12)} (vmesh image ls)`)
    return { imageRemove: { id, name, hosts: results.sort((a, b) => a.host.localeCompare(b.host)) } }
  }
}

/** Drops this host's copy of image `id`, unless a transfer of it runs here or it is a VM snapshot. */
export async function removeImageHere (agent: Agent, id: string): Promise<ImageHostResult> {
  const result: ImageHostResult = { host: agent.name, held: false, manifestRemoved: false, freedBytes: 0, error: '', keptFor: [] }
  try {
    const names = agent.images.list().filter((e) => e.id === id).map((e) => e.name)
    result.held = names.length > 0 || await agent.manifests.has(id)
    if (!result.held) return result
    if (agent.swarm.isPulling(id) || agent.swarm.isPushing(id)) {
      result.error = `${agent.name} is ${agent.swarm.isPulling(id) ? 'receiving' : 'sending'} this image right now; remove it once the push is over`
      return result
    }
    if (await agent.manifests.has(id)) {
      const manifest = await agent.manifests.load(id)
      if (manifest.layers.some((l) => l.kind === 'vm-spec')) {
        result.error = `${id.slice(0, 12)} is a VM snapshot, not an image; remove it with vmesh snapshot rm`
        return result
      }
      await agent.manifests.delete(id)
    }
    for (const n of names) await agent.images.remove(n)
    agent.completeManifests = agent.completeManifests.filter((m) => m !== id)
    agent.membership.advertiseSoon()
    result.manifestRemoved = true
    result.freedBytes = (await agent.collector.run(`image rm ${id.slice(0, 12)}`)).deletedBytes
    const disk = await removeImageDisk(agent, id)
    result.freedBytes += disk.freedBytes
    result.keptFor = disk.keptFor
    agent.log.info(`image ${names[0] ?? id.slice(0, 12)} removed here: ${result.freedBytes} bytes freed${disk.keptFor.length > 0 ? `; its disk file kept for ${disk.keptFor.join(', ')}` : ''}`)
  } catch (err) {
    result.error = (err as Error).message.slice(0, MAX_ERROR_CHARS)
  }
  return result
}

/** Another host's answer, checked: it speaks only for itself, with sane numbers and bounded text. */
export function checkImageHostResult (r: vmesh.v1.IImageHostResult | null | undefined, host: string): ImageHostResult {
  if (r == null) throw new Error('no result')
  if (r.host !== host) throw new Error(`answered as "${String(r.host).slice(0, 64)}"`)
  const freed = Number(r.freedBytes ?? 0)
  if (!Number.isSafeInteger(freed) || freed < 0) throw new Error('malformed byte count')
  const keptFor = names(r.keptFor, VM_NAME_RE, 'VM name')
  return { host, held: r.held === true, manifestRemoved: r.manifestRemoved === true, freedBytes: freed, error: String(r.error ?? '').slice(0, MAX_ERROR_CHARS), keptFor }
}
