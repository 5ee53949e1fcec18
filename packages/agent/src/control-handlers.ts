// The control API's handlers: what `vmesh members`, `stats` and the shell's `watch` ask of an agent,
// and the tables of the VM, image and snapshot handlers.
import type { Agent } from './agent.js'
import type { ControlHandler } from './control-server.js'
import { membersReply } from './members.js'
import { vmHandlers } from './vm-handlers.js'
import { imageHandlers } from './image-handlers.js'
import { snapshotHandlers } from './snapshot-handlers.js'
import { cloneRestoreHandler } from './clone-restore.js'
import { runClone } from './clone-pipeline.js'
import { placementElector } from './clone-elector.js'

/** How often a watch may redraw at most; bursts of gossip coalesce into one update. */
const WATCH_MIN_INTERVAL_MS = 100
/** A watch also refreshes on this period so the "age" column keeps moving. */
const WATCH_REFRESH_MS = 1000

export function controlHandlers (agent: Agent): Record<string, ControlHandler> {
  return {
    ...vmHandlers(agent),
    ...imageHandlers(agent),
    ...snapshotHandlers(agent),
    cloneRestore: cloneRestoreHandler(agent),
    clone: async (ctx) => await runClone(agent, placementElector(agent), ctx),
    members: async () => ({ members: membersReply(agent.membership) }),

    stats: async () => {
      const counters = agent.membership.counters.entries().map(([name, value]) => ({ name, value }))
      counters.push({ name: 'membership.incarnation', value: agent.membership.currentIncarnation })
      counters.push({ name: 'membership.health_score', value: agent.membership.health })
      const store = agent.store.stats()
      counters.push({ name: 'store.chunks', value: store.chunks }, { name: 'store.chunk_bytes', value: store.bytes })
      return { stats: { counters, uptimeMs: Date.now() - agent.startedAt } }
    },

    watch: async (ctx) => {
      const view = agent.membership.view
      let pending: NodeJS.Timeout | undefined
      let lastSent = 0
      const push = (): void => {
        if (pending !== undefined || ctx.signal.aborted) return
        const wait = Math.max(0, lastSent + WATCH_MIN_INTERVAL_MS - Date.now())
        pending = setTimeout(() => {
          pending = undefined
          lastSent = Date.now()
          ctx.send({ members: membersReply(agent.membership) }).catch(() => {})
        }, wait)
      }
      view.on('change', push)
      const refresh = setInterval(push, WATCH_REFRESH_MS)
      push()
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve()
        ctx.signal.addEventListener('abort', () => resolve(), { once: true })
      })
      view.off('change', push)
      clearInterval(refresh)
      if (pending !== undefined) clearTimeout(pending)
      return {}
    }
  }
}
