import { describe, expect, it } from 'vitest'
import { checkMac, randomMac, totalCpus, totalMemMiB, type MachineSpec } from './machine-spec.js'
import { checkVmName, SnapshotLayout, VmLayout } from './layout.js'

describe('machine spec helpers', () => {
  it('makes locally administered unicast MACs and validates given ones', () => {
    expect(randomMac(() => Buffer.from([0xab, 0x01, 0xff]))).toBe('52:54:00:ab:01:ff')
    expect(checkMac('52:54:00:AA:BB:CC')).toBe('52:54:00:aa:bb:cc')
    expect(() => checkMac('01:00:5e:00:00:01')).toThrow(/multicast/)
    expect(() => checkMac('52:54:00')).toThrow(/six hex pairs/)
  })
  it('counts hot-plugged vCPUs and DIMMs', () => {
    const m = { bootCpus: 1, memMiB: 256, hotCpus: [{ id: 'cpu1', type: 't', props: {} }], dimms: [{ id: 'd', sizeMiB: 128 }] } as unknown as MachineSpec
    expect(totalCpus(m)).toBe(2)
    expect(totalMemMiB(m)).toBe(384)
  })
})

describe('layout', () => {
  it('keeps VMs and snapshots apart under the data dir', () => {
    const vm = new VmLayout('/data', 'web-1')
    expect(vm.dir).toBe('/data/vms/web-1')
    expect(vm.overlay(2)).toBe('/data/vms/web-1/disk-2.qcow2')
    const s = new SnapshotLayout('/data', 'web-1-x')
    expect(s.memory('pc.ram')).toBe('/data/snapshots/web-1-x/memory-pc.ram')
  })
  it('rejects names that could escape the data dir', () => {
    for (const bad of ['../x', 'a/b', '', '.hidden', 'a..b', 'x'.repeat(64)]) expect(() => checkVmName(bad)).toThrow(/invalid VM name/)
  })
})
