// Builds QEMU's command line from a MachineSpec. Pure, so tests check the exact arguments.
import { MAIN_RAM_ID, type MachineSpec, type RamBacking } from './machine-spec.js'
import type { Accelerator } from './accelerator.js'

export interface LaunchPaths {
  qmpSocket: string
  controlSocket: string
  console: string
  pidFile: string
  /** The writable top of the disk chain. */
  activeOverlay: string
}

export interface LaunchOptions {
  name: string
  accel: Accelerator
  spec: MachineSpec
  paths: LaunchPaths
  ram: RamBacking
  vmgenid: string
  /** Wait for an incoming migration (restore, snapshot relay) instead of booting. */
  incoming?: boolean
  /** Stay paused after the incoming migration (the snapshot relay). */
  paused?: boolean
}

const DISK_SLOT = 4
const SERIAL_SLOT = 5
export const FIRST_NIC_SLOT = 6

function memBackend(id: string, sizeMiB: number, ram: RamBacking): string {
  if (ram.kind === 'anonymous') return JSON.stringify({ 'qom-type': 'memory-backend-ram', id, size: sizeMiB * 1024 * 1024 })
  const path = ram.files[id]
  if (!path) throw new Error(`no memory file given for RAM block ${id}`)
  return JSON.stringify({ 'qom-type': 'memory-backend-file', id, size: sizeMiB * 1024 * 1024, 'mem-path': path, share: ram.share })
}

/** Node names of the disk chain: layer0..layerN-1 then "top". */
export function blockdevArgs(spec: MachineSpec, activeOverlay: string): string[] {
  const args: string[] = []
  spec.diskLayers.forEach((l, i) => {
    const node: Record<string, unknown> = {
      driver: l.format,
      'node-name': `layer${i}`,
      'read-only': true,
      // Snapshot layers are immutable; locking off lets clones open a layer the source still holds open.
      file: { driver: 'file', filename: l.path, 'read-only': true, locking: 'off' }
    }
    if (l.format === 'qcow2') node.backing = i === 0 ? null : `layer${i - 1}`
    args.push('-blockdev', JSON.stringify(node))
  })
  const top: Record<string, unknown> = {
    driver: 'qcow2',
    'node-name': 'top',
    file: { driver: 'file', filename: activeOverlay },
    backing: spec.diskLayers.length ? `layer${spec.diskLayers.length - 1}` : null
  }
  args.push('-blockdev', JSON.stringify(top))
  return args
}

export function qemuArgs(o: LaunchOptions): string[] {
  const { spec, paths } = o
  const args = [
    '-name', `guest=${o.name}`,
    '-machine', `${spec.machine},accel=${o.accel},memory-backend=${MAIN_RAM_ID}`,
    '-cpu', spec.cpuModel,
    '-smp', `cpus=${spec.bootCpus},maxcpus=${spec.maxCpus},sockets=${spec.maxCpus},cores=1,threads=1`,
    '-m', `size=${spec.memMiB}M,slots=${spec.slots},maxmem=${spec.maxMemMiB}M`,
    '-object', memBackend(MAIN_RAM_ID, spec.memMiB, o.ram),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-chardev', `file,id=con,path=${paths.console}`,
    '-serial', 'chardev:con',
    ...blockdevArgs(spec, paths.activeOverlay),
    '-device', `virtio-blk-pci,id=disk0,drive=top,addr=${pciAddr(DISK_SLOT)}`,
    '-device', `virtio-serial-pci,id=vser0,addr=${pciAddr(SERIAL_SLOT)}`,
    '-chardev', `socket,id=ctl,path=${paths.controlSocket},server=on,wait=off`,
    '-device', 'virtserialport,bus=vser0.0,chardev=ctl,name=vmesh.ctl,id=ctlport',
    '-device', `vmgenid,id=vmgenid0,guid=${o.vmgenid}`
  ]
  if (spec.boot.kernel) args.push('-kernel', spec.boot.kernel)
  if (spec.boot.initrd) args.push('-initrd', spec.boot.initrd)
  if (spec.boot.append) args.push('-append', spec.boot.append)
  for (const nic of spec.nics) {
    // User-mode networking with restrict=on: no host interface, no traffic off the box.
    args.push('-netdev', `user,id=net-${nic.id},restrict=on`)
    args.push('-device', `virtio-net-pci,id=${nic.id},netdev=net-${nic.id},mac=${nic.mac},addr=${pciAddr(nic.slot)}`)
  }
  for (const cpu of spec.hotCpus) {
    args.push('-device', JSON.stringify({ driver: cpu.type, id: cpu.id, ...cpu.props }))
  }
  for (const d of spec.dimms) {
    args.push('-object', memBackend(`mem-${d.id}`, d.sizeMiB, o.ram))
    const dev: Record<string, unknown> = { driver: 'pc-dimm', id: d.id, memdev: `mem-${d.id}` }
    if (d.addr !== undefined) dev.addr = d.addr
    args.push('-device', JSON.stringify(dev))
  }
  args.push('-qmp', `unix:${paths.qmpSocket},server=on,wait=off`)
  args.push('-daemonize', '-pidfile', paths.pidFile)
  if (o.incoming) args.push('-incoming', 'defer')
  if (o.paused) args.push('-S')
  return args
}

/** RAM block ids of a machine: the main RAM plus one per DIMM. */
export function ramBlocks(spec: MachineSpec): Array<{ id: string; sizeMiB: number }> {
  return [{ id: MAIN_RAM_ID, sizeMiB: spec.memMiB }, ...spec.dimms.map((d) => ({ id: `mem-${d.id}`, sizeMiB: d.sizeMiB }))]
}

/** QEMU's PCI address syntax: the slot in hex. */
export function pciAddr(slot: number): string {
  return `0x${slot.toString(16)}`
}

/** Quotes a path for the `exec:` migration URI, which QEMU runs through /bin/sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}
