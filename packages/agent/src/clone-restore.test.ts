// The winner's side of a clone with a fake driver: what happens when the early start (QEMUs
// started while the snapshot arrives) loses its files because the assembly failed.
import { describe, expect, it } from 'vitest'
import type { Snapshot } from '@vmesh/hypervisor'
import type { Agent } from './agent.js'
import { cloneRestoreHandler } from './clone-restore.js'
import type { ControlContext } from './control-server.js'

const ID = 'a'.repeat(64)

function fakeAgent (opts: { assemblyFails: boolean }): { agent: Agent, prepared: string[] } {
  const prepared: string[] = []
  const snapshot = { id: 'web-1' } as unknown as Snapshot
  let filesGone = false
  const agent = {
    name: 'h1',
    log: { warn: () => {}, info: () => {} },
    store: { has: () => true },
    manifests: { has: async () => true, load: async () => ({ layers: [] }) },
    swarm: { mayBringSoon: () => false, isPulling: () => false },
    vms: {
      exclusive: async <T>(_vm: string, fn: () => Promise<T>) => await fn(),
      // The arriving snapshot's assembly fails: its files go, and `complete` says false.
      arrivingSnapshot: async () => {
        if (!opts.assemblyFails) return undefined
        filesGone = true
        return { snapshot, complete: Promise.resolve(false) }
      },
      snapshotFromManifest: async () => { filesGone = false; return snapshot },
      driver: {
        prepareRestore: async (o: { name: string }) => {
          if (filesGone) throw new Error('disk-base layer is missing')
          prepared.push(o.name)
          return { name: o.name }
        },
        discardRestore: async () => {},
        finishRestore: async (p: { name: string }) => ({ vm: { hostname: p.name, mac: '52:54:00:00:00:01' }, restoreMs: 1, identityMs: 1 })
      }
    }
  } as unknown as Agent
  return { agent, prepared }
}

function ctx (names: string[]): ControlContext {
  return {
    request: { cloneRestore: { manifestId: ID, names, reservationId: '' } },
    send: async () => {},
    signal: new AbortController().signal,
    origin: 'local'
  } as unknown as ControlContext
}

describe('clone restore on a winner', () => {
  it('restores from the store when the early start lost its files to a failed assembly', async () => {
    const { agent, prepared } = fakeAgent({ assemblyFails: true })
    const reply = await cloneRestoreHandler(agent)(ctx(['web-a', 'web-b']))
    expect(reply.cloneRestore?.clones?.map((c) => c.state)).toEqual(['running', 'running'])
    expect(prepared).toEqual(['web-a', 'web-b'])
  })

  it('restores the usual way when nothing is arriving', async () => {
    const { agent } = fakeAgent({ assemblyFails: false })
    const reply = await cloneRestoreHandler(agent)(ctx(['web-a']))
    expect(reply.cloneRestore?.clones?.[0]?.state).toBe('running')
  })
})
