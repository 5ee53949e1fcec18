// Where things live under a data dir. One directory per VM (removed whole on destroy) and one per
// snapshot (never removed with a VM: clones keep using its layers).
//
//   <dataDir>/vms/<name>/state.json     persisted VmState (see vm-state.ts)
//                        qmp.sock       QMP control socket
//                        ctl.sock       guest control channel (virtio-serial)
//                        console.log    serial console
//                        qemu.pid       pid file written by QEMU
//                        disk-<n>.qcow2 the active overlay (n grows with each snapshot)
//   <dataDir>/snapshots/<id>/snapshot.json, disk-delta-*.qcow2, memory-<ram block>, device-state.bin
import { join, resolve } from 'node:path'

const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/i

export function checkVmName(name: string): void {
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new Error(`invalid VM name "${name}": use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`)
  }
}

export class VmLayout {
  readonly dir: string
  constructor(dataDir: string, readonly name: string) {
    checkVmName(name)
    this.dir = join(resolve(dataDir), 'vms', name)
  }
  get state(): string {
    return join(this.dir, 'state.json')
  }
  get qmpSocket(): string {
    return join(this.dir, 'qmp.sock')
  }
  get controlSocket(): string {
    return join(this.dir, 'ctl.sock')
  }
  get console(): string {
    return join(this.dir, 'console.log')
  }
  get pidFile(): string {
    return join(this.dir, 'qemu.pid')
  }
  overlay(generation: number): string {
    return join(this.dir, `disk-${generation}.qcow2`)
  }
}

export class SnapshotLayout {
  readonly dir: string
  constructor(dataDir: string, readonly id: string) {
    checkVmName(id)
    this.dir = join(resolve(dataDir), 'snapshots', id)
  }
  get manifest(): string {
    return join(this.dir, 'snapshot.json')
  }
  get deviceState(): string {
    return join(this.dir, 'device-state.bin')
  }
  diskDelta(index: number): string {
    return join(this.dir, `disk-delta-${index}.qcow2`)
  }
  memory(ramId: string): string {
    return join(this.dir, `memory-${ramId}`)
  }
  /** Scratch space for the relay QEMU that writes the memory files; removed after the snapshot. */
  get relayDir(): string {
    return join(this.dir, '.relay')
  }
}

export function vmsDir(dataDir: string): string {
  return join(resolve(dataDir), 'vms')
}
