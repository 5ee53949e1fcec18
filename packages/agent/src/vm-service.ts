// The agent's side of the hypervisor: one VmDriver for this host, the accelerator choice, a cache
// of VM summaries for the advert, per-VM serialisation of operations, and snapshots imported into
// the chunk store as manifests.
import { join } from 'node:path'
import { stat } from 'node:fs/promises'
import { VmDriver, detectAccelerator, guestImage } from '@vmesh/hypervisor'
import type { Accelerator, AcceleratorChoice, Snapshot, VmInfo } from '@vmesh/hypervisor'
import { createManifest, importLayer } from '@vmesh/store'
import type { Layer, LayerKind } from '@vmesh/store'
import type { vmesh } from '@vmesh/wire'
import type { Logger } from './logger.js'
import type { ChunkStore, ManifestStore } from '@vmesh/store'

/** How often the VM list is re-read, so a VM that died on its own shows as stopped. */
const REFRESH_MS = 5000

export interface VmServiceDeps {
  dataDir: string
  store: ChunkStore
  manifests: ManifestStore
  log: Logger
  /** Called when the VM list changed, to re-advertise. */
  onChange: () => void
  accel?: Accelerator | 'auto'
}

export class VmService {
  readonly driver: VmDriver
  private cache: VmInfo[] = []
  private readonly locks = new Map<string, Promise<unknown>>()
  private timer: NodeJS.Timeout | undefined

  private constructor (readonly accel: AcceleratorChoice, private readonly deps: VmServiceDeps) {
    this.driver = new VmDriver({ dataDir: deps.dataDir, accel: accel.accel, log: (line) => { deps.log.info(line) } })
  }

  static async open (deps: VmServiceDeps): Promise<VmService> {
    const accel = await detectAccelerator(deps.accel ?? 'auto')
    deps.log.info(`accelerator: ${accel.accel} (${accel.reason})`)
    const svc = new VmService(accel, deps)
    await svc.refresh()
    svc.timer = setInterval(() => { void svc.refresh() }, REFRESH_MS)
    svc.timer.unref()
    return svc
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** VMs as the advert carries them. */
  summaries (): vmesh.v1.VmSummary.$Properties[] {
    return this.cache.map((v) => ({ name: v.name, state: v.state, source: v.source ?? '', cpus: v.cpus, memMib: v.memMiB }))
  }

  /** vCPUs and memory promised to VMs here, subtracted from what the host offers. */
  reserved (): { vcpus: number, memMiB: number } {
    const running = this.cache.filter((v) => v.state === 'running')
    return { vcpus: running.reduce((s, v) => s + v.cpus, 0), memMiB: running.reduce((s, v) => s + v.memMiB, 0) }
  }

  local (): VmInfo[] {
    return this.cache
  }

  async refresh (): Promise<void> {
    const next = await this.driver.list().catch(() => this.cache)
    const changed = JSON.stringify(next.map((v) => [v.name, v.state, v.cpus, v.memMiB])) !== JSON.stringify(this.cache.map((v) => [v.name, v.state, v.cpus, v.memMiB]))
    this.cache = next
    if (changed) this.deps.onChange()
  }

  /** Runs operations on one VM one at a time; different VMs proceed in parallel. */
  async exclusive<T> (vm: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vm) ?? Promise.resolve()
    const run = prev.catch(() => {}).then(fn)
    this.locks.set(vm, run)
    try {
      return await run
    } finally {
      if (this.locks.get(vm) === run) this.locks.delete(vm)
      await this.refresh()
    }
  }

  /** The demo guest, built on first use (kernel from Debian packages, busybox initramfs). */
  async demoGuest (): Promise<Awaited<ReturnType<typeof guestImage>>> {
    return await guestImage({ build: true, log: (line) => { this.deps.log.info(`build-guest: ${line}`) } })
  }

  /**
   * Imports a snapshot's layers into the chunk store as one manifest. Boot files (kernel, initrd
   * of the demo guest) are not part of the VM's state and stay out of it.
   */
  async importSnapshot (snap: Snapshot): Promise<{ id: string, layers: Layer[] }> {
    const kinds: Record<string, LayerKind | undefined> = { 'disk-base': 'disk-base', 'disk-delta': 'disk-delta', memory: 'memory', 'device-state': 'device-state' }
    const hold = this.deps.store.hold()
    try {
      const layers: Layer[] = []
      for (const l of snap.layers) {
        const kind = kinds[l.kind]
        if (kind === undefined) continue
        layers.push(await importLayer(this.deps.store, l.path, kind, { name: l.id ?? l.kind, hold }))
      }
      const id = await this.deps.manifests.save(createManifest({ name: `${snap.source}@${snap.id}`, layers }))
      return { id, layers }
    } finally {
      hold.release()
    }
  }

  /** Resolves a create's image: a file on this host, or the demo guest when empty. */
  async imageFile (image: string): Promise<string | undefined> {
    if (image === '') return undefined
    const st = await stat(image).catch(() => undefined)
    if (st === undefined || !st.isFile()) return undefined
    return image
  }

  snapshotsDir (): string {
    return join(this.deps.dataDir, 'snapshots')
  }
}
