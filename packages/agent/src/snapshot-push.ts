// A snapshot sent to other hosts while it is taken: the source host's half of a clone. Each
// memory chunk is named to the winners the moment it is stored (a live push, SwarmService.
// pushLive), so the transfer starts with the snapshot instead of after it; the manifest seals the
// push at the end. Where the live push cannot carry the snapshot (more chunks than it was
// opened for, a manifest that differs from the chunks named, a session lost), the finished
// snapshot goes to those hosts by an ordinary push instead.
import { storeConfig, type Layer } from '@vmesh/store'
import type { Snapshot } from '@vmesh/hypervisor'
import type { PushTarget } from '@vmesh/swarm'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import type { ControlContext, ControlReply } from './control-server.js'
import { pushReply, transferProgressSender } from './image-handlers.js'

/** Chunks beyond the VM's RAM a snapshot may have (disk delta, kernel, device state): 1 GiB. */
const EXTRA_CHUNKS = 1024

export async function snapshotAndPush (agent: Agent, ctx: ControlContext, vm: string, targets: PushTarget[]): Promise<ControlReply> {
  const info = agent.vms.local().find((v) => v.name === vm)
  const chunk = storeConfig.DEFAULT_CHUNK_SIZE
  // RAM blocks (main RAM and any hot-plugged DIMMs) each end in a partial chunk at most.
  const capacity = Math.ceil((info?.memMiB ?? 0) * 1048576 / chunk) + 64 + EXTRA_CHUNKS
  const onProgress = transferProgressSender(ctx)
  const live = agent.swarm.pushLive(targets, capacity, { signal: ctx.signal, onProgress })
  let taken
  try {
    // Only the snapshot holds the VM; the transfer goes on without it.
    taken = await agent.vms.exclusive(vm, async () => await agent.vms.snapshot(vm, live))
  } catch (err) {
    live.abort(`the snapshot of ${vm} failed: ${(err as Error).message}`)
    throw err
  }
  const id = taken.id
  const reply = snapshotReply(taken)
  try {
    live.seal(id, await agent.manifests.loadEncoded(id))
  } catch (err) {
    // (A stream the split gave up on goes through the relay QEMU, whose memory may differ from
    // the chunks already named.) The winners then get the finished snapshot the ordinary way.
    live.abort(`the snapshot does not match the chunks named while it was taken: ${(err as Error).message}`)
  }
  await ctx.send({ vmSnapshot: reply }).catch(() => {})
  let result = await live.result
  if (result.hosts.some((h) => h.state !== 'done') && !ctx.signal.aborted) {
    // The hosts the live push lost (it cannot resume) get the finished snapshot the usual way.
    const again = targets.filter((t) => result.hosts.some((h) => h.host === t.peerId.toString() && h.state !== 'done'))
    agent.log.info(`snapshot ${id.slice(0, 12)}: the live push did not reach ${again.map((t) => t.name ?? '').join(', ')}; pushing the finished snapshot there`)
    const retry = await agent.swarm.push(id, again, { signal: ctx.signal, onProgress })
    result = { ...retry, sourceEgressBytes: result.sourceEgressBytes + retry.sourceEgressBytes, hosts: [...result.hosts.filter((h) => h.state === 'done'), ...retry.hosts] }
  }
  return { vmSnapshot: { ...reply, push: pushReply(id, result) } }
}

/** What a snapshot request answers: the snapshot taken and the manifest it was stored as. */
export function snapshotReply (taken: { snapshot: Snapshot, id: string, layers: Layer[] }): vmesh.v1.VmSnapshotReply.$Properties {
  const snap = taken.snapshot
  return {
    snapshotId: snap.id,
    manifestId: taken.id,
    pauseMs: snap.pauseMs,
    downtimeMs: snap.downtimeMs,
    totalMs: snap.totalMs,
    layers: taken.layers.map((l) => ({ kind: l.kind, size: l.size }))
  }
}
