// The agent's side of the hypervisor: one VmDriver for this host, the accelerator choice, a cache
// of VM summaries for the advert, per-VM serialisation of operations, and snapshots imported into
// the chunk store as manifests.
import { join } from 'node:path'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { VmDriver, detectAccelerator, guestImage } from '@vmesh/hypervisor'
import type { Accelerator, AcceleratorChoice, LayerKind as VmLayerKind, MachineSpec, Snapshot, VmInfo } from '@vmesh/hypervisor'
import { chunkLength, createManifest, importLayer, isComplete, LayerBuilder, ManifestAssembly, materializeLayer, storeConfig } from '@vmesh/store'
import type { ChunkHold, Layer, Manifest } from '@vmesh/store'
import type { vmesh } from '@vmesh/wire'
import { imageDiskPath, imageDisksDir } from './image-disk.js'
import type { Logger } from './logger.js'
import type { ChunkStore, ImageCatalogue, ManifestStore } from '@vmesh/store'
import type { LivePush } from '@vmesh/swarm'

/** What a snapshot manifest's vm-spec layer holds. */
interface VmSpecLayer { kind: VmLayerKind, id?: string, format?: string, size: number }
interface VmSpec { version: 1, snapshotId: string, source: string, accel: Accelerator, machine: MachineSpec, layers: VmSpecLayer[], method?: Snapshot['method'], deviceState?: Snapshot['deviceState'] }

const MAX_SPEC_BYTES = 1024 * 1024
/** In a snapshot directory of this host: the id of the manifest it was imported as. */
export const LOCAL_MANIFEST_FILE = 'manifest-id'
/** In a materialised snapshot directory: written once every layer file is in place. */
export const COMPLETE_FILE = '.complete'

/** Name of the directory (under snapshots/) a received snapshot's files are written to. */
export function assemblyDirName (manifestId: string): string {
  return `m-${manifestId.slice(0, 16)}`
}

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

/** The vm-spec layer arrived from another host: check its shape before QEMU sees any of it. */
export function parseVmSpec (text: string): VmSpec {
  if (text.length > MAX_SPEC_BYTES) throw new Error('vm-spec layer is larger than 1 MiB')
  const j = JSON.parse(text) as Partial<VmSpec>
  const kinds = new Set(['disk-base', 'disk-delta', 'memory', 'device-state', 'boot'])
  if (j.version !== 1 || typeof j.snapshotId !== 'string' || typeof j.source !== 'string' || (j.accel !== 'kvm' && j.accel !== 'tcg') ||
    typeof j.machine !== 'object' || j.machine === null || !Array.isArray(j.layers) || j.layers.length > 64 ||
    !j.layers.every((l) => kinds.has(l.kind) && Number.isSafeInteger(l.size) && l.size >= 0 && (l.id === undefined || (typeof l.id === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(l.id))))) {
    throw new Error('vm-spec layer is malformed')
  }
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(j.snapshotId) || !/^[a-z0-9-]{1,63}$/.test(j.source)) throw new Error('vm-spec layer names are malformed')
  if (j.deviceState !== undefined && j.deviceState !== 'ignore-shared' && j.deviceState !== 'ram-stripped') throw new Error('vm-spec layer has an unknown device-state format')
  return j as VmSpec
}

/** Where a snapshot's chunks are named as they are stored: a live push (SwarmService.pushLive). */
export type SnapshotSink = Pick<LivePush, 'announce'>

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
  /**
   * Snapshots being received, assembled into files as their chunks arrive (by manifest id).
   * `outcome` resolves true once the files are complete, false if the assembly stopped.
   */
  private readonly assemblies = new Map<string, { assembly: ManifestAssembly, manifest: Manifest, finished?: Promise<void>, outcome: Promise<boolean>, settle: (ok: boolean) => void }>()

  private constructor (readonly accel: AcceleratorChoice, private readonly deps: VmServiceDeps) {
    this.driver = new VmDriver({ dataDir: deps.dataDir, accel: accel.accel, log: (line) => { deps.log.info(line) } })
  }

  static async open (deps: VmServiceDeps): Promise<VmService> {
    const accel = await detectAccelerator(deps.accel ?? 'auto')
    deps.log.info(`accelerator: ${accel.accel} (${accel.reason})`)
    const svc = new VmService(accel, deps)
    // A clone left waiting for its snapshot by an agent that stopped: nobody will finish it.
    for (const v of await svc.driver.list().catch(() => [])) {
      if (v.state !== 'starting') continue
      deps.log.warn(`vm ${v.name}: its restore did not finish before the agent stopped; removing it`)
      await svc.driver.destroy(v.name).catch((err: Error) => { deps.log.warn(`vm ${v.name}: removing it failed: ${err.message}`) })
    }
    await svc.refresh()
    svc.timer = setInterval(() => { void svc.refresh() }, REFRESH_MS)
    svc.timer.unref()
    return svc
  }

  /** Stops watching; the VMs keep running and a restarted agent picks them up again. */
  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.driver.close()
  }

  /** VMs as the advert carries them. */
  summaries (): vmesh.v1.VmSummary.$Properties[] {
    return this.cache.map((v) => ({ name: v.name, state: v.state, source: v.sourceVm ?? v.source ?? '', cpus: v.cpus, memMib: v.memMiB }))
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
    try {
      return await this.inTurn(vm, fn)
    } finally {
      await this.refresh()
    }
  }

  /** Runs operations under one key one at a time (exclusive() without its refresh of the VM list). */
  async inTurn<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve()
    const run = prev.catch(() => {}).then(fn)
    this.locks.set(key, run)
    try {
      return await run
    } finally {
      if (this.locks.get(key) === run) this.locks.delete(key)
    }
  }

  /** The demo guest, built on first use (kernel from Debian packages, busybox initramfs). */
  async demoGuest (): Promise<Awaited<ReturnType<typeof guestImage>>> {
    return await guestImage({ build: true, log: (line) => { this.deps.log.info(`build-guest: ${line}`) } })
  }

  /**
   * Takes a live snapshot of a VM here and imports it as a manifest. The memory is hashed and
   * stored chunk by chunk while the driver splits QEMU's stream (LayerBuilder), so the import
   * after the snapshot has only the small layers left (disk delta, device state, boot files).
   */
  async snapshot (vm: string, live?: SnapshotSink): Promise<{ snapshot: Snapshot, id: string, layers: Layer[] }> {
    const hold = this.deps.store.hold()
    const builders = new Map<string, LayerBuilder>()
    try {
      const snapshot = await this.driver.snapshot(vm, {
        memoryChunkBytes: storeConfig.DEFAULT_CHUNK_SIZE,
        onMemoryChunk: async (block, size, index, data) => {
          let b = builders.get(block)
          if (b === undefined) { b = new LayerBuilder(this.deps.store, 'memory', block, size, hold); builders.set(block, b) }
          const hash = await b.put(index, data)
          if (hash !== null && data !== null) live?.announce([{ hash, size: data.length, data }])
        }
      })
      const streamed = snapshot.deviceState === 'ram-stripped' ? builders : new Map<string, LayerBuilder>()
      const { id, layers } = await this.importSnapshot(snapshot, streamed, hold, live)
      return { snapshot, id, layers }
    } finally {
      for (const b of builders.values()) await b.abort().catch(() => {})
      hold.release()
    }
  }

  /**
   * Imports a snapshot's layers into the chunk store as one manifest, with a last "vm-spec" layer
   * (the virtual hardware and which layer is which) so a host that receives the manifest can
   * restore clones from it alone.
   */
  async importSnapshot (snap: Snapshot, streamed = new Map<string, LayerBuilder>(), heldBy?: ChunkHold, live?: SnapshotSink): Promise<{ id: string, layers: Layer[] }> {
    const hold = heldBy ?? this.deps.store.hold()
    // Chunks of a layer read from its file are durable in the store when importLayer returns.
    const announce = (layer: Layer): void => {
      live?.announce(layer.chunks.flatMap((h, i) => (h === null ? [] : [{ hash: h, size: chunkLength(layer.size, layer.chunkSize, i) }])), { first: layer.kind !== 'memory' })
    }
    try {
      const layers: Layer[] = []
      const specLayers: VmSpecLayer[] = []
      for (const l of snap.layers) {
        // Memory already stored while the stream was split: only its description is left to finish.
        const built = l.kind === 'memory' ? streamed.get(l.id ?? '') : undefined
        const layer = built !== undefined ? await built.finish() : await importLayer(this.deps.store, l.path, l.kind, { name: l.id ?? l.kind, hold })
        if (built === undefined) announce(layer)
        layers.push(layer)
        specLayers.push({ kind: l.kind, id: l.id, format: l.format, size: l.size })
      }
      const spec: VmSpec = { version: 1, snapshotId: snap.id, source: snap.source, accel: snap.accel, machine: snap.machine, layers: specLayers, method: snap.method, deviceState: snap.deviceState }
      const specPath = join(this.snapshotsDir(), snap.id, 'vm-spec.json')
      await writeFile(specPath, JSON.stringify(spec))
      const specLayer = await importLayer(this.deps.store, specPath, 'vm-spec', { name: 'vm-spec', hold })
      announce(specLayer)
      layers.push(specLayer)
      const id = await this.deps.manifests.save(createManifest({ name: `${snap.source}@${snap.id}`, layers }))
      // Clones started on this host use the snapshot's own files: no copy out of the store.
      await writeFile(join(this.snapshotsDir(), snap.id, LOCAL_MANIFEST_FILE), id)
      return { id, layers }
    } finally {
      if (heldBy === undefined) hold.release()
    }
  }

  /**
   * Turns a manifest held completely in the store into a Snapshot with files on this host. On
   * the host that took the snapshot, those are the snapshot's own files. Elsewhere the layers
   * are materialised once per manifest (sparse, verified) and shared by every clone: usually
   * already done while the chunks arrived (beginAssembly), else here from the store.
   */
  async snapshotFromManifest (manifestId: string): Promise<Snapshot> {
    const manifest = await this.deps.manifests.load(manifestId)
    const specIndex = manifest.layers.findIndex((l) => l.kind === 'vm-spec')
    if (specIndex < 0) throw new Error(`manifest ${manifestId.slice(0, 12)} is not a VM snapshot (no vm-spec layer)`)
    const spec = parseVmSpec(await this.readLayerText(manifest, specIndex))
    const local = await this.localSnapshot(manifestId, spec.snapshotId)
    if (local !== undefined) return local
    const dir = this.assemblyDir(manifestId)
    await this.assemblies.get(manifestId)?.finished?.catch(() => {})
    if (!(await exists(join(dir, COMPLETE_FILE)))) {
      await mkdir(dir, { recursive: true })
      for (const [i, l] of manifest.layers.entries()) await materializeLayer(this.deps.store, l, layerPath(dir, manifest, i))
      await writeFile(join(dir, COMPLETE_FILE), manifestId)
    }
    return snapshotOf(manifestId, manifest, spec, dir)
  }

  /**
   * A snapshot this host is receiving, usable before it is all here: resolves once every layer
   * but memory is in its file and the memory files are in place (still being written; see
   * VmDriver.prepareRestore), with `complete`, which says whether the rest arrived. Undefined
   * when no assembly of that manifest is under way (it is complete, or not a VM snapshot).
   */
  async arrivingSnapshot (manifestId: string): Promise<{ snapshot: Snapshot, complete: Promise<boolean> } | undefined> {
    const entry = this.assemblies.get(manifestId)
    if (entry === undefined || entry.finished !== undefined) return undefined
    const manifest = entry.manifest
    const memory = manifest.layers.flatMap((l, i) => (l.kind === 'memory' ? [i] : []))
    const others = manifest.layers.flatMap((l, i) => (l.kind === 'memory' ? [] : [i]))
    const specIndex = manifest.layers.findIndex((l) => l.kind === 'vm-spec')
    if ((manifest.layers[specIndex]?.size ?? 0) > MAX_SPEC_BYTES) throw new Error(`vm-spec layer is larger than ${MAX_SPEC_BYTES} bytes`)
    await entry.assembly.ready(others, memory)
    const dir = this.assemblyDir(manifestId)
    const spec = parseVmSpec(await readFile(layerPath(dir, manifest, specIndex), 'utf8'))
    return { snapshot: snapshotOf(manifestId, manifest, spec, dir), complete: entry.outcome }
  }

  /** The snapshot as the driver took it on this host, if it did and it is intact. */
  private async localSnapshot (manifestId: string, snapshotId: string): Promise<Snapshot | undefined> {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(snapshotId)) return undefined
    const marker = await readFile(join(this.snapshotsDir(), snapshotId, LOCAL_MANIFEST_FILE), 'utf8').catch(() => '')
    if (marker !== manifestId) return undefined
    return await this.driver.loadSnapshot(snapshotId).catch(() => undefined)
  }

  private async readLayerText (manifest: Manifest, index: number): Promise<string> {
    const layer = manifest.layers[index] as Layer
    if (layer.size > MAX_SPEC_BYTES) throw new Error(`vm-spec layer is ${layer.size} bytes, more than ${MAX_SPEC_BYTES}`)
    const parts: Uint8Array[] = []
    for (const h of layer.chunks) parts.push(h === null ? new Uint8Array(layer.chunkSize) : await this.deps.store.readVerified(h))
    return Buffer.concat(parts).subarray(0, layer.size).toString('utf8')
  }

  // --- assembling a snapshot while it is received (hooks of the swarm, see image-handlers.ts) ---

  /** This host starts receiving a manifest: if it is a VM snapshot, write its files as chunks come. */
  async beginAssembly (manifestId: string): Promise<void> {
    const manifest = await this.deps.manifests.load(manifestId)
    if (!manifest.layers.some((l) => l.kind === 'vm-spec')) return
    const dir = this.assemblyDir(manifestId)
    if (await exists(join(dir, COMPLETE_FILE))) return
    await this.abortAssembly(manifestId)
    await mkdir(dir, { recursive: true })
    const assembly = new ManifestAssembly(this.deps.store, manifest, manifest.layers.map((_, i) => layerPath(dir, manifest, i)))
    await assembly.open()
    assembly.copyHeldChunks()
    let settle!: (ok: boolean) => void
    const outcome = new Promise<boolean>((resolve) => { settle = resolve })
    this.assemblies.set(manifestId, { assembly, manifest, outcome, settle })
  }

  chunkArrived (manifestId: string, hash: string, data: Uint8Array): void {
    this.assemblies.get(manifestId)?.assembly.put(hash, data)
  }

  /** Every chunk is here: finish the files (what this host held before comes from the store). */
  completeAssembly (manifestId: string): void {
    const entry = this.assemblies.get(manifestId)
    if (entry === undefined || entry.finished !== undefined) return
    const t0 = Date.now()
    entry.finished = entry.assembly.finish()
      .then(async () => {
        await writeFile(join(this.assemblyDir(manifestId), COMPLETE_FILE), manifestId)
        this.deps.log.info(`snapshot ${manifestId.slice(0, 12)}: files assembled during the transfer (${Date.now() - t0} ms to finish)`)
        entry.settle(true)
      })
      .catch((err: Error) => {
        this.deps.log.warn(`snapshot ${manifestId.slice(0, 12)}: assembling its files failed (${err.message}); they will be materialised from the store`)
        entry.settle(false)
      })
      .finally(() => { if (this.assemblies.get(manifestId) === entry) this.assemblies.delete(manifestId) })
  }

  async abortAssembly (manifestId: string): Promise<void> {
    const entry = this.assemblies.get(manifestId)
    if (entry === undefined) return
    this.assemblies.delete(manifestId)
    if (entry.finished !== undefined) await entry.finished
    else await entry.assembly.abort()
    entry.settle(false)
  }

  private assemblyDir (manifestId: string): string {
    return join(this.snapshotsDir(), assemblyDirName(manifestId))
  }

  /**
   * Resolves a create's image: an image in this host's catalogue (id, id prefix or name; its
   * disk layer is materialised once under <data-dir>/images/ and used read-only as the base),
   * or a file on this host. Undefined when it is neither.
   */
  async imageFile (image: string, catalogue: ImageCatalogue): Promise<string | undefined> {
    if (image === '') return undefined
    const id = catalogue.resolve(image)
    if (id !== undefined && await this.deps.manifests.has(id)) {
      const manifest = await this.deps.manifests.load(id)
      const disk = manifest.layers.find((l) => l.kind === 'disk-base')
      if (disk === undefined) throw new Error(`image ${image} has no disk layer`)
      if (!isComplete(this.deps.store, manifest)) throw new Error(`image ${image} is not complete on this host; "vmesh image push" it here first`)
      const dir = imageDisksDir(this.deps.dataDir)
      const path = imageDiskPath(this.deps.dataDir, id)
      if (!(await stat(path).then((st) => st.isFile() && st.size === disk.size, () => false))) {
        await mkdir(dir, { recursive: true })
        const tmp = `${path}.tmp-${process.pid}`
        await materializeLayer(this.deps.store, disk, tmp)
        await rename(tmp, path)
      }
      return path
    }
    const st = await stat(image).catch(() => undefined)
    if (st === undefined || !st.isFile()) return undefined
    return image
  }

  snapshotsDir (): string {
    return join(this.deps.dataDir, 'snapshots')
  }
}

/** Where layer `i` of a received snapshot goes in its directory. */
function layerPath (dir: string, manifest: Manifest, i: number): string {
  return join(dir, `${i}-${manifest.layers[i]?.kind ?? ''}`)
}

/** A received snapshot as the driver takes it: the vm-spec's layers, at their files in `dir`. */
function snapshotOf (manifestId: string, manifest: Manifest, spec: VmSpec, dir: string): Snapshot {
  const fileLayers = manifest.layers.map((l, i) => ({ l, i })).filter(({ l }) => l.kind !== 'vm-spec')
  if (fileLayers.length !== spec.layers.length) throw new Error(`manifest ${manifestId.slice(0, 12)}: vm-spec lists ${spec.layers.length} layers, manifest has ${fileLayers.length}`)
  return {
    version: 1,
    id: spec.snapshotId,
    source: spec.source,
    createdAt: new Date(manifest.createdAtMs).toISOString(),
    accel: spec.accel,
    machine: spec.machine,
    layers: fileLayers.map(({ i }, k) => {
      const s = spec.layers[k] as VmSpecLayer
      return { kind: s.kind, id: s.id, format: s.format, size: s.size, path: layerPath(dir, manifest, i) }
    }),
    pauseMs: 0,
    downtimeMs: 0,
    totalMs: 0,
    precopyMs: 0,
    method: spec.method === 'stopped' || spec.method === 'precopy' ? spec.method : 'background',
    deviceState: spec.deviceState ?? 'ignore-shared'
  }
}
