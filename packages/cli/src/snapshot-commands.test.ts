import { describe, it, expect } from 'vitest'
import { isSnapshotSubcommand, parseSnapshotArgs, removeReport, snapshotsTable } from './snapshot-commands.js'
import type { SnapshotJson } from './snapshot-commands.js'

const ID = '3f9a1c2e4b5d' + '0'.repeat(52)

describe('vmesh snapshot ls | rm', () => {
  it('ls and rm are subcommands; anything else is a VM to snapshot', () => {
    expect(isSnapshotSubcommand(['ls'])).toBe(true)
    expect(isSnapshotSubcommand(['rm', 'abc'])).toBe(true)
    expect(isSnapshotSubcommand(['web'])).toBe(false)
    expect(isSnapshotSubcommand(['--', 'ls'])).toBe(false)
    expect(() => parseSnapshotArgs('ls', ['--force'])).toThrow(/no --force/)
    expect(parseSnapshotArgs('rm', ['abc', '--force']).values.force).toBe(true)
  })

  it('lists id, source, age, size, hosts and users', () => {
    const s: SnapshotJson = { manifestId: ID, snapshotId: 'web-m3x8k2', sourceVm: 'web', createdAtMs: 1_000, storedBytes: 3 * 1048576, holders: ['h0', 'h1'], partial: ['h2'], users: [{ vm: 'web', host: 'h0', source: true }, { vm: 'web-3f9a', host: 'h1', source: false }] }
    const text = snapshotsTable([s], 61_000)
    expect(text.split('\n')[0]).toMatch(/^ID\s+SOURCE\s+SNAPSHOT\s+AGE\s+SIZE\s+HOSTS\s+USED BY$/)
    expect(text).toContain('3f9a1c2e4b5d  web')
    expect(text).toContain('3.0 MiB')
    expect(text).toContain('h0, h1, h2 (partial)')
    expect(text).toContain('web@h0 (source), web-3f9a@h1')
    expect(snapshotsTable([])).toBe('no snapshots in the cluster')
  })

  it('rm reports per host: freed bytes, clones in the way, the source\'s disk chain; fails unless gone everywhere', () => {
    const refused = removeReport({
      manifestId: ID,
      sourceVm: 'web',
      hosts: [
        { host: 'h0', held: true, inUseBy: ['web'] },
        { host: 'h1', held: true, inUseBy: ['web-3f9a', 'web-11ab'] },
        { host: 'h3', held: false }
      ]
    })
    expect(refused.ok).toBe(false)
    expect(refused.text).toContain('h1: kept, in use by web-3f9a, web-11ab; destroy them first (vmesh destroy --clones-of web)')
    expect(refused.text).toMatch(/h0: kept, in use by web, the source: its disk chain includes the snapshot's disk-delta/)
    expect(refused.text).not.toContain('h3')

    const done = removeReport({ manifestId: ID, sourceVm: 'web', hosts: [{ host: 'h1', held: true, manifestRemoved: true, freedBytes: 2 * 1048576 }, { host: 'h2', held: true, manifestRemoved: true, freedBytes: 1048576 }] })
    expect(done.ok).toBe(true)
    expect(done.text).toContain('h1: freed 2.0 MiB')
    expect(done.text).toContain('freed 3.0 MiB in all')

    const failed = removeReport({ manifestId: ID, hosts: [{ host: 'h1', held: true, error: 'host h1 does not answer' }] })
    expect(failed.ok).toBe(false)
    expect(failed.text).toContain('h1: failed: host h1 does not answer')
  })
})
