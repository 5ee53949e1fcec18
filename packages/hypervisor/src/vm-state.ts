// The JSON each VM keeps in its directory, so that a restarted agent can list and destroy VMs.
import { readFile, rename, writeFile } from 'node:fs/promises'
import type { Accelerator } from './accelerator.js'
import type { MachineSpec } from './machine-spec.js'

export const VM_STATE_VERSION = 1

export interface VmState {
  version: typeof VM_STATE_VERSION
  name: string
  hostname: string
  accel: Accelerator
  createdAt: string
  /** Snapshot id this VM was restored from; absent for a VM created from an image. */
  source?: string
  /** The VM that snapshot was taken of, shown as a clone's source. */
  sourceVm?: string
  pid: number
  vmgenid: string
  /** Generation of the active overlay (disk-<n>.qcow2). */
  generation: number
  activeOverlay: string
  /** RAM files a clone maps privately (kept so a restart uses the same files); absent: anonymous RAM. */
  ramFiles?: Record<string, string>
  /** Set while a clone's QEMU waits for the snapshot's device state (VmDriver.prepareRestore). */
  starting?: boolean
  spec: MachineSpec
}

/** The state of a VM about to start (no process yet, first overlay, fresh vmgenid). */
export function newVmState(o: { name: string; hostname: string; accel: Accelerator; activeOverlay: string; spec: MachineSpec }, vmgenid: string): VmState {
  return { version: VM_STATE_VERSION, ...o, createdAt: new Date().toISOString(), pid: 0, vmgenid, generation: 0 }
}

export async function writeState(path: string, state: VmState): Promise<void> {
  const tmp = `${path}.tmp`
  await writeFile(tmp, JSON.stringify(state, null, 2))
  await rename(tmp, path)
}

export async function readState(path: string): Promise<VmState> {
  const j = JSON.parse(await readFile(path, 'utf8')) as VmState
  if (j.version !== VM_STATE_VERSION) throw new Error(`${path}: unknown state version ${String(j.version)}`)
  return j
}
