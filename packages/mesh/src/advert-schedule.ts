// When a periodic advert is worth sending. Every advert costs each member a signature check and
// its copies through the gossip mesh: measured with nine agents on one machine, adverts every 2 s
// took half of an idle agent's CPU (5.8% of a core; 2.9% at one per 10 s). So the periodic tick
// publishes only when the resources moved enough to change a placement, or when the last advert
// is getting old; discrete changes (VMs, reservations, manifests held) are published at once by
// Membership.advertiseSoon.
import type { Resources } from './resources.js'

export interface AdvertSnapshot {
  resources: Resources
  /** VMs and manifests held, in any stable encoding: any change is worth an advert. */
  holdings: string
}

/** True if `next` differs from what was last published enough to tell the cluster. */
export function advertChanged (last: AdvertSnapshot | undefined, next: AdvertSnapshot): boolean {
  if (last === undefined || last.holdings !== next.holdings) return true
  const a = last.resources
  const b = next.resources
  if (a.cpuCores !== b.cpuCores || a.memTotalMib !== b.memTotalMib || a.diskTotalMib !== b.diskTotalMib || a.accel !== b.accel) return true
  if ((a.vcpusReserved ?? 0) !== (b.vcpusReserved ?? 0) || (a.memReservedMib ?? 0) !== (b.memReservedMib ?? 0)) return true
  const moved = (x: number | null | undefined, y: number | null | undefined, step: number): boolean => Math.abs((x ?? 0) - (y ?? 0)) >= step
  const cores = Math.max(1, b.cpuCores ?? 1)
  // Steps a placement notices: a quarter of the cores busier, a VM's worth of memory, a clone's
  // worth of disk, a fifth of the disk's time.
  return moved(a.load1, b.load1, Math.max(0.5, cores / 4)) ||
    moved(a.memFreeMib, b.memFreeMib, Math.max(128, (b.memTotalMib ?? 0) / 50)) ||
    moved(a.diskFreeMib, b.diskFreeMib, Math.max(1024, (b.diskTotalMib ?? 0) / 100)) ||
    moved(a.ioUtil, b.ioUtil, 0.2)
}
