import { describe, expect, it } from 'vitest'
import { blockdevArgs, pciAddr, qemuArgs, ramBlocks, shellQuote } from './qemu-args.js'
import type { MachineSpec } from './machine-spec.js'

const spec: MachineSpec = {
  machine: 'pc',
  cpuModel: 'qemu64',
  bootCpus: 1,
  maxCpus: 4,
  memMiB: 256,
  maxMemMiB: 1280,
  slots: 8,
  boot: { kernel: '/g/vmlinuz', initrd: '/g/initrd.img', append: 'console=ttyS0' },
  diskLayers: [
    { path: '/g/base.qcow2', format: 'qcow2' },
    { path: '/s/delta.qcow2', format: 'qcow2' }
  ],
  diskSizeBytes: 64 << 20,
  nics: [{ id: 'nic0', mac: '52:54:00:00:00:01', slot: 6 }],
  hotCpus: [{ id: 'cpu1', type: 'qemu64-x86_64-cpu', props: { 'socket-id': 1, 'core-id': 0, 'thread-id': 0 } }],
  dimms: [{ id: 'dimm0', sizeMiB: 128, addr: 4294967296 }]
}
const paths = { qmpSocket: '/v/qmp.sock', controlSocket: '/v/ctl.sock', console: '/v/console.log', pidFile: '/v/qemu.pid', activeOverlay: '/v/disk-1.qcow2' }
const after = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []))

describe('qemuArgs', () => {
  it('chains the disk layers explicitly, read-only under a writable top', () => {
    const nodes = after(blockdevArgs(spec, '/v/disk-1.qcow2'), '-blockdev').map((j) => JSON.parse(j) as Record<string, unknown>)
    expect(nodes.map((n) => n['node-name'])).toEqual(['layer0', 'layer1', 'top'])
    expect(nodes[0]!.backing).toBeNull()
    expect(nodes[1]!.backing).toBe('layer0')
    expect(nodes[1]!['read-only']).toBe(true)
    expect(nodes[2]!.backing).toBe('layer1')
    expect(nodes[2]!['read-only']).toBeUndefined()
    expect((nodes[2]!.file as { filename: string }).filename).toBe('/v/disk-1.qcow2')
  })

  it('maps a clone\'s RAM privately from the snapshot files and waits for the device state', () => {
    const args = qemuArgs({ name: 'c1', accel: 'tcg', spec, paths, vmgenid: 'g', incoming: true, ram: { kind: 'file', share: false, files: { 'pc.ram': '/s/mem', 'mem-dimm0': '/s/dimm' } } })
    const objects = after(args, '-object').map((j) => JSON.parse(j) as Record<string, unknown>)
    expect(objects).toEqual([
      { 'qom-type': 'memory-backend-file', id: 'pc.ram', size: 256 << 20, 'mem-path': '/s/mem', share: false },
      { 'qom-type': 'memory-backend-file', id: 'mem-dimm0', size: 128 << 20, 'mem-path': '/s/dimm', share: false }
    ])
    expect(after(args, '-incoming')).toEqual(['defer'])
    expect(args).not.toContain('-S')
    expect(after(args, '-machine')[0]).toBe('pc,accel=tcg,memory-backend=pc.ram')
  })

  it('recreates hot-plugged vCPUs, DIMMs and NICs at fixed places', () => {
    const args = qemuArgs({ name: 'v', accel: 'kvm', spec, paths, vmgenid: 'abc', ram: { kind: 'anonymous' } })
    const devices = after(args, '-device')
    expect(devices).toContain('virtio-net-pci,id=nic0,netdev=net-nic0,mac=52:54:00:00:00:01,addr=0x6')
    expect(devices).toContain(JSON.stringify({ driver: 'qemu64-x86_64-cpu', id: 'cpu1', 'socket-id': 1, 'core-id': 0, 'thread-id': 0 }))
    expect(devices).toContain(JSON.stringify({ driver: 'pc-dimm', id: 'dimm0', memdev: 'mem-dimm0', addr: 4294967296 }))
    expect(devices).toContain('vmgenid,id=vmgenid0,guid=abc')
    expect(after(args, '-netdev')).toEqual(['user,id=net-nic0,restrict=on'])
    expect(after(args, '-smp')).toEqual(['cpus=1,maxcpus=4,sockets=4,cores=1,threads=1'])
    expect(after(args, '-m')).toEqual(['size=256M,slots=8,maxmem=1280M'])
    expect(args).toContain('-daemonize')
    expect(args).not.toContain('-incoming')
  })

  it('refuses file-backed RAM without a file for every block', () => {
    expect(() => qemuArgs({ name: 'v', accel: 'tcg', spec, paths, vmgenid: 'g', ram: { kind: 'file', share: true, files: { 'pc.ram': '/m' } } })).toThrow(/mem-dimm0/)
  })

  it('lists RAM blocks, formats PCI slots and quotes shell paths', () => {
    expect(ramBlocks(spec)).toEqual([
      { id: 'pc.ram', sizeMiB: 256 },
      { id: 'mem-dimm0', sizeMiB: 128 }
    ])
    expect(pciAddr(10)).toBe('0xa')
    expect(shellQuote("/a b/it's")).toBe(`'/a b/it'\\''s'`)
  })
})
