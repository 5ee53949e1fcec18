// Adapts the placement service to what the clone pipeline needs: hosts as dialable references,
// reasons as lines for a person, and a way to hand back reservations it will not use.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Agent } from './agent.js'
import type { Elector } from './clone-pipeline.js'

/**
 * Disk a clone's copy-on-write overlay may grow to, reserved per clone. Clones share the
 * snapshot's layers; only their own writes land in the overlay.
 */
export const CLONE_OVERLAY_BUDGET_BYTES = 512 * 1024 * 1024

export function placementElector (agent: Agent): Elector {
  return {
    elect: async (task, count, opts) => {
      const manifest = await agent.manifests.loadEncoded(task.manifestId).catch(() => undefined)
      const r = await agent.placement.elect({
        cpus: task.cpus,
        memMib: task.memMiB,
        diskBytes: CLONE_OVERLAY_BUDGET_BYTES,
        accel: task.accel ?? '',
        manifestId: task.manifestId,
        manifestBytes: task.diskBytes,
        ...(manifest !== undefined ? { manifest } : {})
      }, count, { policy: opts.policy, partial: opts.partial, signal: opts.signal, exclude: opts.exclude })
      // Placement's reasons already begin with the host's name.
      const reasons = r.reasons.map((x) => x.reason.startsWith(x.name) ? x.reason : `${x.name}: ${x.reason}`)
      for (const s of r.silent) reasons.push(`${s}: did not answer the bid in time`)
      return {
        assignments: r.placements.map((p) => ({ host: { peerId: peerIdFromString(p.peerId), name: p.name }, count: p.count, reservationId: p.reservationId })),
        unplaced: r.wanted - r.placed,
        reasons
      }
    },
    release: async (a) => {
      await agent.placement.release({ id: a.host.peerId.toString(), name: a.host.name, peerId: a.host.peerId }, a.reservationId)
    }
  }
}
