// The persisted description of a VM's virtual hardware. Everything needed to start QEMU again with
// an identical device set lives here, because a migration stream (our device-state layer) only
// loads into a QEMU whose devices match the source's one for one, hot-plugged ones included.

export interface DiskLayer {
  path: string
  format: string
}

export interface NicSpec {
  /** QOM id of the device, e.g. nic0. */
  id: string
  mac: string
  /** PCI slot, fixed so that a restore sees the device where the snapshot had it. */
  slot: number
}

export interface CpuSpec {
  id: string
  /** The driver name QEMU reported in query-hotpluggable-cpus. */
  type: string
  props: Record<string, number>
}

export interface DimmSpec {
  id: string
  sizeMiB: number
  /** Guest physical address QEMU chose at hot-plug; given again on restore. */
  addr?: number
}

export interface BootSpec {
  kernel?: string
  initrd?: string
  append?: string
}

export interface MachineSpec {
  machine: string
  cpuModel: string
  /** vCPUs present at power-on (hot-plugged ones are in `hotCpus`). */
  bootCpus: number
  maxCpus: number
  memMiB: number
  maxMemMiB: number
  slots: number
  boot: BootSpec
  /** Bottom-up read-only disk layers under the active overlay. */
  diskLayers: DiskLayer[]
  diskSizeBytes: number
  nics: NicSpec[]
  hotCpus: CpuSpec[]
  dimms: DimmSpec[]
}

/** RAM placement for one start of QEMU (not persisted in a snapshot's machine spec). */
export type RamBacking =
  | { kind: 'anonymous' }
  /** share=on: QEMU writes the RAM to these files (the snapshot relay). share=off: private CoW map of them (a clone). */
  | { kind: 'file'; share: boolean; files: Record<string, string> }

export const MAIN_RAM_ID = 'pc.ram'

export function totalCpus(m: MachineSpec): number {
  return m.bootCpus + m.hotCpus.length
}

export function totalMemMiB(m: MachineSpec): number {
  return m.memMiB + m.dimms.reduce((a, d) => a + d.sizeMiB, 0)
}

/** A locally administered, unicast MAC in QEMU's 52:54:00 range, from random bytes. */
export function randomMac(rand: (n: number) => Buffer): string {
  const b = rand(3)
  return ['52', '54', '00', ...[...b].map((x) => x.toString(16).padStart(2, '0'))].join(':')
}

export function checkMac(mac: string): string {
  const m = mac.toLowerCase()
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m)) throw new Error(`invalid MAC "${mac}": want six hex pairs like 52:54:00:12:34:56`)
  if (parseInt(m.slice(0, 2), 16) & 1) throw new Error(`invalid MAC "${mac}": multicast bit set`)
  return m
}
