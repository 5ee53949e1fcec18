// The disk file `vmesh create --image NAME` writes out of an image's disk layer once per host
// (<data-dir>/images/<id>.img) and puts read-only under its VMs' overlays. `vmesh image rm` deletes
// it with the image unless VMs here are based on it: then it stays for them, and the sweep after
// every destroy (and at start) deletes it once the image is gone and no VM here uses it.
import { readdir, rm, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Agent } from './agent.js'
import { sweepRemovedSnapshots, vmFiles } from './snapshot-sweep.js'

const DISK_FILE_RE = /^([0-9a-f]{64})\.img$/

export function imageDisksDir (dataDir: string): string {
  return join(dataDir, 'images')
}

export function imageDiskPath (dataDir: string, id: string): string {
  return join(imageDisksDir(dataDir), `${id}.img`)
}

/**
 * Runs fn while no other holder of image `id`'s lock runs: a create that writes out the disk file
 * and starts a VM on it, or a removal that looks for its users (who appear only once the VM's
 * state is written) and deletes it.
 */
export async function withImageDisk<T> (agent: Agent, id: string, fn: () => Promise<T>): Promise<T> {
  // VM names have no ':', so the key meets no VM's own lock. No refresh of the VM list: a create
  // holding this lock runs inside its VM's exclusive(), which refreshes.
  return await agent.vms.inTurn(`image:${id}`, fn)
}

/** The VMs on this host whose disk chain includes the file. */
async function usersOfFile (agent: Agent, path: string): Promise<string[]> {
  const file = resolve(path)
  return (await vmFiles(agent)).filter((v) => v.paths.some((p) => resolve(p) === file)).map((v) => v.name).sort()
}

/** Deletes image `id`'s disk file unless VMs here use it; says what it freed or whom it kept it for. */
export async function removeImageDisk (agent: Agent, id: string): Promise<{ freedBytes: number, keptFor: string[] }> {
  return await withImageDisk(agent, id, async () => await removeUnused(agent, id))
}

async function removeUnused (agent: Agent, id: string): Promise<{ freedBytes: number, keptFor: string[] }> {
  const path = imageDiskPath(agent.opts.dataDir, id)
  const st = await stat(path).catch(() => undefined)
  if (st === undefined || !st.isFile()) return { freedBytes: 0, keptFor: [] }
  const keptFor = await usersOfFile(agent, path)
  if (keptFor.length > 0) return { freedBytes: 0, keptFor }
  await rm(path, { force: true })
  agent.log.info(`image disk ${path} deleted: ${st.blocks * 512} bytes`)
  // A sparse file frees what it occupies, not its length.
  return { freedBytes: st.blocks * 512, keptFor: [] }
}

/** After a destroy (and at start): what `snapshot rm` and `image rm` kept for VMs that are gone now. */
export async function sweepKeptFiles (agent: Agent): Promise<void> {
  await sweepRemovedSnapshots(agent)
  await sweepRemovedImageDisks(agent)
}

/** Deletes every image disk file whose image this host no longer holds and that no VM here uses. */
export async function sweepRemovedImageDisks (agent: Agent): Promise<void> {
  for (const name of await readdir(imageDisksDir(agent.opts.dataDir)).catch(() => [] as string[])) {
    const id = DISK_FILE_RE.exec(name)?.[1]
    if (id === undefined || await agent.manifests.has(id)) continue
    // Checked again under the lock: the image may have come back (pushed or added) meanwhile.
    await withImageDisk(agent, id, async () => { if (!(await agent.manifests.has(id))) await removeUnused(agent, id) })
  }
}
