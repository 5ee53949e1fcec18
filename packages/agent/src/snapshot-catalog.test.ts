import { describe, it, expect } from 'vitest'
import {
  checkHostResult, checkRemoveRequest, checkSnapshotList, insideAny, mergeSnapshotLists, parseSnapshotName, resolveSnapshotRef, usersOf, vmFilePaths
} from './snapshot-catalog.js'
import type { SnapshotEntry } from './snapshot-catalog.js'

const A = 'a'.repeat(8) + '1'.repeat(56)
const B = 'a'.repeat(8) + '2'.repeat(56)
const C = 'c'.repeat(64)

function entry (manifestId: string, host: string, more: Partial<SnapshotEntry> = {}): SnapshotEntry {
  return { manifestId, snapshotId: 'web-m3x8k2', sourceVm: 'web', createdAtMs: 1000, storedBytes: 10, holders: [host], partial: [], users: [], ...more }
}

describe('which VMs use a snapshot', () => {
  const state = {
    spec: { diskLayers: [{ path: '/d/images/base.img' }, { path: '/d/snapshots/web-1/disk-delta-1.qcow2' }, { nope: 1 }] },
    ramFiles: { 'pc.ram': '/d/snapshots/m-0123456789abcdef/2-memory', bad: 7 }
  }

  it('reads the disk chain and the RAM files from a state file, ignoring what is not a path', () => {
    expect(vmFilePaths(state)).toEqual(['/d/images/base.img', '/d/snapshots/web-1/disk-delta-1.qcow2', '/d/snapshots/m-0123456789abcdef/2-memory'])
    expect(vmFilePaths(null)).toEqual([])
    expect(vmFilePaths({ spec: { diskLayers: 'x' }, ramFiles: null })).toEqual([])
  })

  it('a VM uses a directory when a file of its chain lies inside it, never by a shared name prefix', () => {
    expect(insideAny('/d/snapshots/web-1/disk-delta-1.qcow2', ['/d/snapshots/web-1'])).toBe(true)
    expect(insideAny('/d/snapshots/web-10/disk-delta-1.qcow2', ['/d/snapshots/web-1'])).toBe(false)
    expect(insideAny('/d/snapshots/web-1/../web-2/x', ['/d/snapshots/web-1'])).toBe(false)
    expect(insideAny('snapshots/web-1/x', ['snapshots/web-1'])).toBe(false)
    const vms = [
      { name: 'web', paths: vmFilePaths(state).slice(0, 2) },
      { name: 'web-3f9a', paths: ['/d/vms/web-3f9a/disk-1.qcow2', '/d/snapshots/m-0123456789abcdef/0-disk-base'] },
      { name: 'db', paths: ['/d/images/base.img'] }
    ]
    expect(usersOf(vms, ['/d/snapshots/web-1'])).toEqual(['web'])
    expect(usersOf(vms, ['/d/snapshots/m-0123456789abcdef'])).toEqual(['web-3f9a'])
    expect(usersOf(vms, ['/d/snapshots/web-1', '/d/snapshots/m-0123456789abcdef'])).toEqual(['web', 'web-3f9a'])
    expect(usersOf(vms, ['/d/snapshots/other'])).toEqual([])
  })
})

describe('merging the hosts\' lists', () => {
  it('one entry per snapshot: holders and users united, partial hosts that also hold it dropped, oldest first', () => {
    const merged = mergeSnapshotLists([
      [entry(A, 'h0', { users: [{ vm: 'web', host: 'h0', source: true }], createdAtMs: 2000 }), entry(C, 'h0', { createdAtMs: 500, snapshotId: '', sourceVm: '' })],
      [entry(A, 'h1', { holders: [], partial: ['h1'], users: [{ vm: 'web-3f9a', host: 'h1', source: false }] })],
      [entry(A, 'h2', { users: [{ vm: 'web-11ab', host: 'h2', source: false }] }), entry(C, 'h2', { snapshotId: 'db-x', sourceVm: 'db', storedBytes: 99 })]
    ])
    expect(merged.map((m) => m.manifestId)).toEqual([C, A])
    const a = merged[1]!
    expect(a.holders).toEqual(['h0', 'h2'])
    expect(a.partial).toEqual(['h1'])
    expect(a.createdAtMs).toBe(1000)
    expect(a.users.map((u) => u.vm)).toEqual(['web', 'web-11ab', 'web-3f9a'])
    const c = merged[0]!
    expect(c).toMatchObject({ snapshotId: 'db-x', sourceVm: 'db', storedBytes: 99, holders: ['h0', 'h2'] })
  })

  it('does not change the lists it was given', () => {
    const list = [entry(A, 'h0')]
    mergeSnapshotLists([list, [entry(A, 'h1')]])
    expect(list[0]!.holders).toEqual(['h0'])
  })
})

describe('naming one snapshot', () => {
  const snaps = [{ manifestId: A, snapshotId: 'web-m3x8k2' }, { manifestId: B, snapshotId: 'web-m3x9aa' }, { manifestId: C, snapshotId: 'db-x' }]

  it('takes a full id, a unique prefix of 8+ hex, or the snapshot id', () => {
    expect(resolveSnapshotRef(C, snaps)).toBe(C)
    expect(resolveSnapshotRef('cccccccc', snaps)).toBe(C)
    expect(resolveSnapshotRef('aaaaaaaa1', snaps)).toBe(A)
    expect(resolveSnapshotRef('web-m3x9aa', snaps)).toBe(B)
  })

  it('says when a prefix is ambiguous, too short, unknown, or not a reference', () => {
    expect(() => resolveSnapshotRef('aaaaaaaa', snaps)).toThrow(/start of 2 snapshots/)
    expect(() => resolveSnapshotRef('ccc', snaps)).toThrow(/no snapshot "ccc"/)
    expect(() => resolveSnapshotRef('dddddddd', snaps)).toThrow(/no snapshot/)
    expect(() => resolveSnapshotRef('../../etc', snaps)).toThrow(/not a reference/)
    expect(() => resolveSnapshotRef('', snaps)).toThrow(/not a reference/)
    expect(() => resolveSnapshotRef('a'.repeat(200), snaps)).toThrow(/not a reference/)
  })
})

describe('input from the network', () => {
  it('a member may only ask another host to remove a full manifest id', () => {
    expect(checkRemoveRequest({ ref: 'cccccccc', force: true }, true)).toEqual({ ref: 'cccccccc', force: true })
    expect(() => checkRemoveRequest({ ref: 'cccccccc' }, false)).toThrow(/full manifest id/)
    expect(checkRemoveRequest({ ref: C }, false)).toEqual({ ref: C, force: false })
    expect(() => checkRemoveRequest(undefined, true)).toThrow(/not a reference/)
  })

  it('a host\'s list is checked field by field and speaks only for that host', () => {
    const good = { manifestId: A, snapshotId: 'web-1', sourceVm: 'web', createdAtMs: 5, storedBytes: 7, holders: ['h1'], partial: [], users: [{ vm: 'web-3f9a', host: 'h1', source: false }] }
    expect(checkSnapshotList([good], 'h1')[0]).toMatchObject({ manifestId: A, holders: ['h1'], users: [{ vm: 'web-3f9a', host: 'h1', source: false }] })
    expect(checkSnapshotList(null, 'h1')).toEqual([])
    expect(() => checkSnapshotList([{ ...good, manifestId: 'xyz' }], 'h1')).toThrow(/manifest id/)
    expect(() => checkSnapshotList([{ ...good, holders: ['h2'] }], 'h1')).toThrow(/answered for host "h2"/)
    expect(() => checkSnapshotList([{ ...good, users: [{ vm: 'Bad Name', host: 'h1' }] }], 'h1')).toThrow(/VM name/)
    expect(() => checkSnapshotList([{ ...good, storedBytes: -1 }], 'h1')).toThrow(/size/)
    expect(() => checkSnapshotList(Array.from({ length: 5000 }, () => good), 'h1')).toThrow(/more than/)
    expect(() => checkSnapshotList([{ ...good, users: Array.from({ length: 2000 }, () => ({ vm: 'a', host: 'h1' })) }], 'h1')).toThrow(/too many/)
  })

  it('a host\'s remove result must come from that host and is bounded', () => {
    expect(checkHostResult({ host: 'h1', held: true, freedBytes: 10, inUseBy: ['web'], error: 'x'.repeat(5000) }, 'h1')).toMatchObject({ held: true, freedBytes: 10, inUseBy: ['web'], manifestRemoved: false })
    expect(checkHostResult({ host: 'h1', error: 'x'.repeat(5000) }, 'h1').error.length).toBe(1000)
    expect(() => checkHostResult({ host: 'h2' }, 'h1')).toThrow(/answered as/)
    expect(() => checkHostResult(undefined, 'h1')).toThrow(/no result/)
  })

  it('reads a snapshot manifest\'s name', () => {
    expect(parseSnapshotName('web@web-m3x8k2')).toEqual({ sourceVm: 'web', snapshotId: 'web-m3x8k2' })
    expect(parseSnapshotName('ubuntu.qcow2')).toBeUndefined()
    expect(parseSnapshotName('web@../x')).toBeUndefined()
  })
})
