// Which VMs on this host use which files, and the sweep that deletes the snapshot directories
// `snapshot rm --force` had to keep for such VMs once none of them uses them any more.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Agent } from './agent.js'
import { usersOf, vmFilePaths } from './snapshot-catalog.js'

/** In a snapshot directory: its snapshot was removed, and the directory stays only for its users. */
export const REMOVED_FILE = '.removed'

export interface VmFiles { name: string, paths: string[] }

/** Every VM on this host with the files it uses, read from the state files (not the 5 s cache). */
export async function vmFiles (agent: Agent): Promise<VmFiles[]> {
  const out: VmFiles[] = []
  for (const name of await readdir(join(agent.opts.dataDir, 'vms')).catch(() => [] as string[])) {
    try {
      const state: unknown = JSON.parse(await readFile(join(agent.vms.driver.vmDir(name), 'state.json'), 'utf8'))
      out.push({ name, paths: vmFilePaths(state) })
    } catch { /* half-created or foreign directory: not a VM */ }
  }
  return out
}

/** Marks a directory kept for its users, so the sweep deletes it once they are gone. */
export async function markRemoved (dir: string): Promise<void> {
  await writeFile(join(dir, REMOVED_FILE), `${new Date().toISOString()}\n`)
}

/** Deletes every marked snapshot directory no VM uses any more; returns the names deleted. */
export async function sweepRemovedSnapshots (agent: Agent): Promise<string[]> {
  const root = agent.vms.snapshotsDir()
  const marked: string[] = []
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (await stat(join(root, name, REMOVED_FILE)).then(() => true, () => false)) marked.push(name)
  }
  const deleted: string[] = []
  // Every destroy sweeps: the VMs' states are read only when some directory waits for it.
  if (marked.length === 0) return deleted
  const vms = await vmFiles(agent)
  for (const name of marked) {
    if (usersOf(vms, [join(root, name)]).length > 0) continue
    try {
      // The driver checks again that no VM uses it: a clone restored a moment ago stops it.
      await agent.vms.driver.deleteSnapshot(name)
      deleted.push(name)
      agent.log.info(`snapshot directory ${name} deleted: removed earlier, and no VM here uses it now`)
    } catch (err) {
      agent.log.warn(`snapshot directory ${name} (removed earlier) not deleted: ${(err as Error).message}`)
    }
  }
  return deleted
}
