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

/** The VMs on this host whose disk chain includes the file. */
async function usersOfFile (agent: Agent, path: string): Promise<string[]> {
  const file = resolve(path)
  return (await vmFiles(agent)).filter((v) => v.paths.some((p) => resolve(p) === file)).map((v) => v.name).sort()
}

/** Deletes image `id`'s disk file unless VMs here use it; says what it freed or whom it kept it for. */
export async function removeImageDisk (agent: Agent, id: string): Promise<{ freedBytes: number, keptFor: string[] }> {
  const path = imageDiskPath(agent.opts.dataDir, id)
  const st = await stat(path).catch(() => undefined)
  if (st === undefined || !st.isFile()) return { freedBytes: 0, keptFor: [] }
  const keptFor = await usersOfFile(agent, path)
  if (keptFor.length > 0) return { freedBytes: 0, keptFor }
  await rm(path, { force: true })
  // A sparse file frees what it occupies, not its length.
  return { freedBytes: st.blocks * 512, keptFor: [] }
}

/** After a destroy (and at start): what `snapshot rm` and `image rm` kept for VMs that are gone now. */
export async function sweepKeptFiles (agent: Agent): Promise<void> {
  await sweepRemovedSnapshots(agent)
  await sweepRemovedImageDisks(agent)
}

/** Deletes every image disk file whose image this host no longer holds and that no VM here uses. */
export async function sweepRemovedImageDisks (agent: Agent): Promise<string[]> {
  const dir = imageDisksDir(agent.opts.dataDir)
  const orphans: string[] = []
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const id = DISK_FILE_RE.exec(name)?.[1]
    if (id !== undefined && !(await agent.manifests.has(id))) orphans.push(join(dir, name))
  }
  // Every destroy sweeps: the VMs' states are read only when some file waits for it.
  if (orphans.length === 0) return []
  const used = new Set((await vmFiles(agent)).flatMap((v) => v.paths.map((p) => resolve(p))))
  const deleted: string[] = []
  for (const path of orphans) {
    if (used.has(resolve(path))) continue
    await rm(path, { force: true })
    deleted.push(path)
    agent.log.info(`image disk ${path} deleted: its image was removed, and no VM here uses it now`)
  }
  return deleted
}
