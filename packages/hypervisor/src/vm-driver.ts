// VmDriver: create, live snapshot, restore (clone), identity, hot-plug, destroy and list QEMU VMs
// on this host. All state is under `dataDir` (see layout.ts) so a restarted agent picks it up.
//
// Live snapshot, in short: the source's RAM is copied into a paused "relay" QEMU on this host whose
// RAM is memory-backend-file share=on, so the relay's RAM ends up as plain memory files. The copy is
// a background snapshot (userfaultfd write protection, the guest keeps running), or made with the
// guest stopped, or (on request, where it is safe: precopy-safety.ts) a live pre-copy. While the
// source is stopped the disk is snapshotted (blockdev-snapshot onto a new overlay: the frozen layer
// is the snapshot's disk delta, consistent with the memory). The relay then writes its device state
// only (x-ignore-shared) and exits. A clone maps the memory files copy-on-write (share=off) and
// loads just the device state, so it starts in ~100 ms and clones on one host share the unchanged
// pages.
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Accelerator } from './accelerator.js'
import { GuestChannel, type GuestHealth } from './guest-channel.js'
import { guestImage, type GuestImage } from './guest-image.js'
import { SnapshotLayout, VmLayout, vmsDir, checkVmName } from './layout.js'
import { checkMac, MAIN_RAM_ID, randomMac, totalCpus, totalMemMiB, type DiskLayer, type MachineSpec, type RamBacking } from './machine-spec.js'
import { FIRST_NIC_SLOT, pciAddr, qemuArgs, ramBlocks, shellQuote } from './qemu-args.js'
import { QemuImg } from './qemu-img.js'
import { RamStreamError, splitRamStream, waitStreamComplete, type MemoryChunkSink } from './ram-stream.js'
import { isOurQemu, processMemory, startQemu, stopQemu } from './qemu-process.js'
import { QmpClient, QmpError, type QmpEvent } from './qmp-client.js'
import { precopyUnsafeReason, type QemuVersion } from './precopy-safety.js'
import { newVmState, readState, writeState, type VmState } from './vm-state.js'

export interface VmDriverOptions {
  dataDir: string
  /** Accelerator for new VMs; use detectAccelerator() to choose. Default tcg. */
  accel?: Accelerator
  qemuBinary?: string
  qemuImgBinary?: string
  log?: (line: string) => void
  /** How long create() waits for the guest's control channel to answer. TCG boots in ~5 s here. */
  bootTimeoutMs?: number
  /** Migration downtime target for pre-copy snapshots (QEMU's downtime-limit). */
  downtimeLimitMs?: number
  /**
   * auto (default): background snapshot (userfaultfd write-protection) where QEMU accepts it for
   * the VM's RAM, else a copy with the guest stopped. precopy: live pre-copy; refused under TCG
   * before QEMU 9.0, where it loses guest writes (see precopy-safety.ts).
   */
  snapshotMode?: 'auto' | 'stopped' | 'precopy'
  /**
   * Split a background snapshot's stream in this process (default true; see ram-stream.ts).
   * false loads it through a relay QEMU, which is also the fallback for a stream the split
   * refuses: kept so that path is tested and can be compared.
   */
  splitRamStream?: boolean
}

export interface CreateOptions {
  name: string
  /** Image file (used read-only as the base layer) or a full guest; default: the demo guest. */
  image?: string | GuestImage
  cpus?: number
  memMiB?: number
  /** Upper bounds for hot-plug. Defaults: max(4, 2*cpus) vCPUs, memMiB + 1024 MiB. */
  maxCpus?: number
  maxMemMiB?: number
  hostname?: string
  mac?: string
  /** Wait for the vmesh guest's control channel (default true for the demo guest). */
  waitReady?: boolean
}

export type LayerKind = 'disk-base' | 'disk-delta' | 'memory' | 'device-state' | 'boot'

/** One plain file of a snapshot. The chunk store imports it as is; restore takes the same files back, at any path. */
export interface SnapshotLayer {
  kind: LayerKind
  path: string
  size: number
  /** memory: RAM block id (pc.ram, mem-dimm0...); boot: kernel | initrd; disk layers: image format. */
  id?: string
  format?: string
}

export interface Snapshot {
  version: 1
  id: string
  source: string
  createdAt: string
  accel: Accelerator
  /** Bottom-up: disk-base, disk-delta..., then memory, device-state, boot. */
  layers: SnapshotLayer[]
  /** The source's virtual hardware at the snapshot (restore uses the layers' paths, not the ones in here). */
  machine: MachineSpec
  /** Source stopped, from QEMU's STOP to RESUME event timestamps. */
  pauseMs: number
  /** QEMU's own migration downtime figure. */
  downtimeMs: number
  /** Whole snapshot, request to layers on disk. */
  totalMs: number
  /** RAM copied out while the source ran (pre-copy, or the background snapshot's stream). */
  precopyMs: number
  /**
   * How memory was captured: background (userfaultfd write-protection, guest running), stopped
   * (guest paused for the whole copy: a clone, whose file-backed RAM QEMU 7.2 cannot
   * write-protect) or precopy (live pre-copy, only when asked for: see the README).
   */
  method: 'background' | 'stopped' | 'precopy'
  /**
   * ignore-shared (default): the device state was saved by a relay with x-ignore-shared and
   * holds no RAM block's pages; ram-stripped: split from the source's stream (ram-stream.ts),
   * holds the small blocks' pages and is loaded with x-ignore-shared off.
   */
  deviceState?: 'ignore-shared' | 'ram-stripped'
}

export interface SnapshotOptions {
  id?: string
  /**
   * Each chunk of each memory block as the background snapshot's stream is split (any order;
   * null for an all-zero chunk). Complete only if the returned snapshot's deviceState is
   * ram-stripped; otherwise (other modes, or a stream the split refused) read the memory files.
   */
  onMemoryChunk?: MemoryChunkSink
  /** Chunk size for onMemoryChunk (default 1 MiB). */
  memoryChunkBytes?: number
}

export interface RestoreOptions {
  snapshot: Snapshot
  name: string
  hostname?: string
  mac?: string
}

/** A clone whose QEMU waits for its device state (VmDriver.prepareRestore). */
export interface PreparedRestore {
  readonly name: string
  readonly options: RestoreOptions
  readonly state: VmState
  readonly deviceStatePath: string
  /** QEMU start to its QMP prompt, counted in the restore time. */
  readonly launchMs: number
}

export interface RestoreResult {
  vm: VmInfo
  /** QEMU start to guest running again (memory mapped, device state loaded). */
  restoreMs: number
  /** Name, hostname and MAC set in the guest (or a new NIC, see giveIdentity). */
  identityMs: number
}

export interface VmInfo {
  name: string
  hostname: string
  /** starting: restored, its QEMU waiting for the snapshot to arrive (prepareRestore). */
  state: 'running' | 'starting' | 'stopped'
  pid: number
  accel: Accelerator
  /** Snapshot id this VM was restored from. */
  source?: string
  /** The VM that snapshot was taken of. */
  sourceVm?: string
  cpus: number
  memMiB: number
  mac?: string
  dir: string
  console: string
}

export interface HotplugRequest {
  /** Total vCPUs wanted (only growth is supported). */
  cpus?: number
  /** Total memory wanted in MiB; the growth must be a multiple of 128 MiB (a Linux memory block). */
  memMiB?: number
}

const MEM_BLOCK_MIB = 128

export class VmDriver {
  readonly dataDir: string
  readonly accel: Accelerator
  private readonly qemu: string
  private readonly img: QemuImg
  private readonly log: (line: string) => void
  private readonly qmps = new Map<string, QmpClient>()
  private readonly channels = new Map<string, GuestChannel>()
  /** One operation at a time per VM: a snapshot and a hot-plug on one QEMU must not interleave. */
  private readonly locks = new Map<string, Promise<unknown>>()

  constructor(private readonly opts: VmDriverOptions) {
    this.dataDir = opts.dataDir
    this.accel = opts.accel ?? 'tcg'
    this.qemu = opts.qemuBinary ?? 'qemu-system-x86_64'
    this.img = new QemuImg(opts.qemuImgBinary)
    this.log = opts.log ?? (() => {})
  }

  // ---- create -------------------------------------------------------------------------------

  async create(o: CreateOptions): Promise<VmInfo> {
    return this.serial(o.name, () => this.createUnlocked(o))
  }

  private async createUnlocked(o: CreateOptions): Promise<VmInfo> {
    const layout = new VmLayout(this.dataDir, o.name)
    const image = typeof o.image === 'string' ? { disk: o.image } : (o.image ?? (await guestImage({ log: this.log })))
    const cpus = o.cpus ?? 1
    const memMiB = o.memMiB ?? 256
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) throw new Error(`cpus must be 1..64, got ${cpus}`)
    if (!Number.isInteger(memMiB) || memMiB < 64 || memMiB % 2) throw new Error(`memMiB must be an even number >= 64, got ${memMiB}`)
    const maxCpus = o.maxCpus ?? Math.max(4, 2 * cpus)
    const maxMemMiB = o.maxMemMiB ?? memMiB + 1024
    if (maxCpus < cpus) throw new Error(`maxCpus ${maxCpus} is below cpus ${cpus}`)
    if (maxMemMiB < memMiB) throw new Error(`maxMemMiB ${maxMemMiB} is below memMiB ${memMiB}`)
    await this.checkFile(image.disk, 'image')
    if (image.kernel) await this.checkFile(image.kernel, 'kernel')
    if (image.initrd) await this.checkFile(image.initrd, 'initrd')
    const base = await this.img.info(image.disk)
    if (base.format === 'qcow2') await this.img.check(image.disk)
    if (await exists(layout.dir)) throw new Error(`a VM named "${o.name}" already exists here (${layout.dir}); destroy it first or pick another name`)

    const spec: MachineSpec = {
      machine: 'pc',
      cpuModel: 'qemu64',
      bootCpus: cpus,
      maxCpus,
      memMiB,
      maxMemMiB,
      slots: 8,
      boot: { kernel: image.kernel, initrd: image.initrd, append: image.append },
      diskLayers: [{ path: image.disk, format: base.format }],
      diskSizeBytes: base.virtualSize,
      nics: [{ id: 'nic0', mac: o.mac ? checkMac(o.mac) : randomMac(randomBytes), slot: FIRST_NIC_SLOT }],
      hotCpus: [],
      dimms: []
    }
    const state = newVmState({ name: o.name, hostname: o.hostname ?? o.name, accel: this.accel, activeOverlay: layout.overlay(0), spec }, randomUUID())
    await mkdir(layout.dir, { recursive: true })
    try {
      await this.img.createOverlay(state.activeOverlay, image.disk, base.format, base.virtualSize)
      await this.launch(layout, state, { kind: 'anonymous' }, false)
      await writeState(layout.state, state)
      const wait = o.waitReady ?? Boolean(image.kernel)
      if (wait) {
        await this.waitGuest(layout, this.opts.bootTimeoutMs ?? 180_000)
        if (state.hostname !== 'vmesh-guest') await this.guest(o.name).setIdentity(o.name, state.hostname)
      }
      this.log(`vm ${o.name}: running (pid ${state.pid}, ${this.accel}, ${cpus} vCPU, ${memMiB} MiB)`)
      return this.info(state, true)
    } catch (err) {
      await this.discard(layout, state.pid)
      throw err
    }
  }

  // ---- snapshot -----------------------------------------------------------------------------

  /** Live copy-on-write snapshot of a running VM; the VM keeps running on a new overlay. */
  async snapshot(name: string, opts: SnapshotOptions = {}): Promise<Snapshot> {
    return this.serial(name, () => this.snapshotUnlocked(name, opts))
  }

  private async snapshotUnlocked(name: string, opts: SnapshotOptions): Promise<Snapshot> {
    const t0 = performance.now()
    const layout = new VmLayout(this.dataDir, name)
    const state = await this.runningState(name)
    const id = opts.id ?? `${name}-${Date.now().toString(36)}`
    const snap = new SnapshotLayout(this.dataDir, id)
    if (await exists(snap.dir)) throw new Error(`snapshot ${id} already exists`)
    const q = await this.qmp(name)
    if (this.opts.snapshotMode === 'precopy') {
      const v = await q.execute<{ qemu: QemuVersion }>('query-version')
      const unsafe = precopyUnsafeReason(state.accel, v.qemu)
      if (unsafe) throw new Error(`snapshot of ${name} refused: ${unsafe}`)
    }
    await mkdir(snap.relayDir, { recursive: true })
    const spec = state.spec
    const frozenPath = snap.diskDelta(spec.diskLayers.length)
    const nextGen = state.generation + 1
    const nextOverlay = layout.overlay(nextGen)
    const relay = new VmLayout(snap.relayDir, 'relay')
    let relayPid = 0
    let relayQmp: QmpClient | undefined
    let diskSwitched = false
    // A background snapshot's stream is split while QEMU writes it (see step 3a).
    const splitWanted = this.opts.splitRamStream !== false
    let streamWritten = false
    let splitting: Promise<void> | undefined
    try {
      // 1. Where RAM goes: the snapshot's memory files. Background snapshots are split by
      // ram-stream.ts; the other modes (and a stream it cannot split) go through a "relay": a
      // paused QEMU with the same hardware whose RAM is those files (share=on).
      const files: Record<string, string> = {}
      for (const b of ramBlocks(spec)) files[b.id] = snap.memory(b.id)
      await mkdir(relay.dir, { recursive: true })
      const migSock = join(relay.dir, 'mig.sock')
      const startRelay = async (): Promise<QmpClient> => {
        const blank = join(relay.dir, 'blank.qcow2')
        await this.img.createBlank(blank, spec.diskSizeBytes)
        const relayState: VmState = { ...state, name: 'relay', pid: 0, activeOverlay: blank, spec: { ...spec, diskLayers: [] } }
        await this.launch(relay, relayState, { kind: 'file', share: true, files }, true, true)
        relayPid = relayState.pid
        relayQmp = await QmpClient.connect(relay.qmpSocket)
        return relayQmp
      }
      // Background snapshot (userfaultfd write-protection) when QEMU and the kernel allow it for
      // this VM's RAM. Live pre-copy only on request, and never where it loses guest writes
      // (TCG before QEMU 9.0: see precopy-safety.ts).
      const bg = (this.opts.snapshotMode ?? 'auto') === 'auto' &&
        (await q
          .execute('migrate-set-capabilities', {
            capabilities: [
              { capability: 'events', state: true },
              { capability: 'pause-before-switchover', state: false },
              { capability: 'x-ignore-shared', state: false },
              { capability: 'background-snapshot', state: true }
            ]
          })
          .then(
            () => true,
            () => false
          ))
      const stoppedCopy = !bg && this.opts.snapshotMode !== 'precopy'
      if (!bg) await (await startRelay()).execute('migrate-incoming', { uri: `unix:${migSock}` })

      // 2. The new overlay the source continues on, added to the source's block graph in advance.
      await this.img.createOverlay(nextOverlay, frozenPath, 'qcow2', spec.diskSizeBytes)
      const nextNode = `top${nextGen}`
      await q.execute('blockdev-add', { driver: 'qcow2', 'node-name': nextNode, file: { driver: 'file', filename: nextOverlay }, backing: null })
      const activeNode = await this.activeNode(q)

      let stop: QmpEvent
      let resume: QmpEvent
      let precopyMs: number
      let mig: { downtime?: number }
      const stream = join(relay.dir, 'ram.stream')
      if (bg) {
        // 3a. Stop, snapshot the disk, start the background snapshot; QEMU saves the device state,
        // write-protects RAM and resumes the guest itself, then streams RAM while the guest runs
        // (a page is copied out before the guest's first write to it).
        const since = q.events.length
        const tPre = performance.now()
        await q.execute('stop')
        await q.execute('blockdev-snapshot', { node: activeNode, overlay: nextNode })
        diskSwitched = true
        await q.execute('migrate', { uri: `exec:cat > ${shellQuote(stream)}` })
        // Split the stream as it is written: memory chunks reach opts.onMemoryChunk (the agent
        // stores them, and a live push sends them on) while QEMU still copies RAM out.
        if (splitWanted) {
          splitting = this.splitWhileWritten(stream, files, snap.deviceState, opts, () => !streamWritten)
          splitting.catch(() => {}) // awaited in step 5
        }
        resume = await q.waitEvent('RESUME', () => true, 30_000, since)
        stop = await q.waitEvent('STOP', () => true, 1000, since)
        await this.waitMigration(q, 'completed', since, 120_000)
        precopyMs = performance.now() - tPre
        mig = await q.execute<{ downtime?: number }>('query-migrate')
        await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'background-snapshot', state: false }] })
      } else {
        // 3b. Pre-copy while the source runs; stop at switchover to snapshot the disk, then finish.
        await q.execute('migrate-set-capabilities', {
          capabilities: [
            { capability: 'events', state: true },
            { capability: 'pause-before-switchover', state: true },
            { capability: 'x-ignore-shared', state: false }
          ]
        })
        await q.execute('migrate-set-parameters', { 'downtime-limit': this.opts.downtimeLimitMs ?? 20, 'max-bandwidth': 16 * 1024 * 1024 * 1024 })
        const since = q.events.length
        const tPre = performance.now()
        // Without write-protection, copy with the guest stopped unless live pre-copy was asked for.
        if (stoppedCopy) await q.execute('stop')
        await q.execute('migrate', { uri: `unix:${migSock}` })
        await this.waitMigration(q, 'pre-switchover', since, 120_000)
        precopyMs = performance.now() - tPre
        await q.execute('blockdev-snapshot', { node: activeNode, overlay: nextNode })
        diskSwitched = true
        await q.execute('migrate-continue', { state: 'pre-switchover' })
        await this.waitMigration(q, 'completed', since, 60_000)
        await this.contAfterMigration(q)
        stop = await q.waitEvent('STOP', () => true, 5000, since)
        resume = await q.waitEvent('RESUME', () => true, 5000, since)
        mig = await q.execute<{ downtime?: number }>('query-migrate')
        await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: false }] })
      }

      // 4. The frozen layer belongs to the snapshot from now on; the source keeps it as a backing layer.
      await rename(state.activeOverlay, frozenPath)
      state.spec = { ...spec, diskLayers: [...spec.diskLayers, { path: frozenPath, format: 'qcow2' }] }
      state.generation = nextGen
      state.activeOverlay = nextOverlay
      await writeState(layout.state, state)

      // 5. Memory files and a device state without their pages: split from the background
      // snapshot's stream, or written by the relay (its RAM is already in the memory files; it
      // saves the device state only, x-ignore-shared).
      const tRamOut = performance.now()
      let deviceState: Snapshot['deviceState'] = 'ignore-shared'
      if (bg) {
        await waitStreamComplete(stream)
        streamWritten = true
        try {
          if (splitting === undefined) throw new RamStreamError('splitting is turned off (splitRamStream: false)')
          await splitting
          deviceState = 'ram-stripped'
        } catch (err) {
          // Only a stream it cannot read goes to the relay; the sink's errors (a full disk) fail the snapshot.
          if (!(err instanceof RamStreamError)) throw err
          this.log(`vm ${name}: splitting the RAM stream failed (${(err as Error).message}); loading it through a relay QEMU instead`)
          await (await startRelay()).execute('migrate-incoming', { uri: `exec:cat ${shellQuote(stream)}` })
        }
      }
      const tRelayIn = performance.now()
      if (relayQmp !== undefined) {
        await this.waitMigration(relayQmp, 'completed', 0, 60_000, true)
        await relayQmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }, { capability: 'x-ignore-shared', state: true }] })
        const since2 = relayQmp.events.length
        await relayQmp.execute('migrate', { uri: `exec:cat > ${shellQuote(snap.deviceState)}` })
        await this.waitMigration(relayQmp, 'completed', since2, 60_000)
        await relayQmp.execute('quit').catch(() => {})
        relayQmp.close()
        await stopQemu(relayPid, relay.dir)
      }
      await rm(snap.relayDir, { recursive: true, force: true })
      const tRelayDone = performance.now()

      const layers: SnapshotLayer[] = []
      for (const [i, l] of state.spec.diskLayers.entries()) layers.push({ kind: i === 0 ? 'disk-base' : 'disk-delta', path: l.path, size: await sizeOf(l.path), format: l.format })
      for (const b of ramBlocks(spec)) layers.push({ kind: 'memory', id: b.id, path: files[b.id]!, size: await sizeOf(files[b.id]!) })
      layers.push({ kind: 'device-state', path: snap.deviceState, size: await sizeOf(snap.deviceState) })
      if (spec.boot.kernel) layers.push({ kind: 'boot', id: 'kernel', path: spec.boot.kernel, size: await sizeOf(spec.boot.kernel) })
      if (spec.boot.initrd) layers.push({ kind: 'boot', id: 'initrd', path: spec.boot.initrd, size: await sizeOf(spec.boot.initrd) })
      const result: Snapshot = {
        version: 1,
        id,
        source: name,
        createdAt: new Date().toISOString(),
        accel: state.accel,
        layers,
        machine: state.spec,
        pauseMs: round(resume.timeMs - stop.timeMs),
        downtimeMs: mig.downtime ?? NaN,
        totalMs: round(performance.now() - t0),
        precopyMs: round(precopyMs),
        method: bg ? 'background' : stoppedCopy ? 'stopped' : 'precopy',
        deviceState
      }
      const { writeFile } = await import('node:fs/promises')
      await writeFile(snap.manifest, JSON.stringify(result, null, 2))
      this.log(`vm ${name}: snapshot ${id} in ${result.totalMs} ms, source paused ${result.pauseMs} ms (QEMU downtime ${result.downtimeMs} ms); RAM out at ${round(tRamOut - t0)} ms, in the memory files at ${round(tRelayIn - t0)} ms (${deviceState === 'ram-stripped' ? 'stream split' : 'relay'}), device state saved at ${round(tRelayDone - t0)} ms`)
      return result
    } catch (err) {
      // A split following the stream stops at its end now, and fails there if it is cut short.
      streamWritten = true
      await splitting?.catch(() => {})
      await q.execute('migrate_cancel').catch(() => {})
      const status = await q.execute<{ status: string }>('query-status').catch(() => undefined)
      if (status && status.status !== 'running') await q.execute('cont').catch(() => {})
      relayQmp?.close()
      if (relayPid) await stopQemu(relayPid, relay.dir).catch(() => {})
      if (diskSwitched) {
        // The source already writes to the new overlay; keep the frozen layer in the VM dir.
        state.spec = { ...spec, diskLayers: [...spec.diskLayers, { path: state.activeOverlay, format: 'qcow2' }] }
        state.generation = nextGen
        state.activeOverlay = nextOverlay
        await writeState(layout.state, state)
      } else {
        await q.execute('blockdev-del', { 'node-name': `top${nextGen}` }).catch(() => {})
        await rm(nextOverlay, { force: true })
      }
      await rm(snap.dir, { recursive: true, force: true })
      throw new Error(`snapshot of ${name} failed: ${(err as Error).message}`)
    }
  }

  /** Splits a background snapshot's stream while QEMU writes it (`writing` true until it is whole). */
  private async splitWhileWritten(stream: string, files: Record<string, string>, deviceState: string, opts: SnapshotOptions, writing: () => boolean): Promise<void> {
    // `cat` creates the file once QEMU starts the migration.
    for (let waited = 0; !(await exists(stream)); waited += 5) {
      if (waited > 10_000) throw new RamStreamError(`the snapshot stream ${stream} was not created within 10 s`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await splitRamStream(stream, files, deviceState, { chunkBytes: opts.memoryChunkBytes, onChunk: opts.onMemoryChunk, writing })
  }

  // ---- restore ------------------------------------------------------------------------------

  /** Starts a clone from snapshot layers (any paths), with its own name, hostname, MAC and vmgenid. */
  async restore(o: RestoreOptions): Promise<RestoreResult> {
    return await this.finishRestore(await this.prepareRestore(o))
  }

  /**
   * The first half of a restore: checks the snapshot's files, creates the clone's overlay and
   * starts its QEMU waiting for the device state (-incoming defer), listed as "starting". The
   * memory files must be in place at full size but may still be being written: the clone maps
   * them privately and touches none of their pages before finishRestore, and until a page is
   * touched the mapping shows what the file holds. So a winner starts its clones' QEMUs while
   * the memory still arrives. finishRestore or discardRestore must follow.
   */
  async prepareRestore(o: RestoreOptions): Promise<PreparedRestore> {
    return this.serial(o.name, () => this.prepareRestoreUnlocked(o))
  }

  /** The second half: loads the device state (the memory files are complete by now), runs the clone, gives it its identity. */
  async finishRestore(p: PreparedRestore): Promise<RestoreResult> {
    return this.serial(p.name, () => this.finishRestoreUnlocked(p))
  }

  /** A prepared clone that will not run (its snapshot never arrived): stops its QEMU and removes it. */
  async discardRestore(p: PreparedRestore): Promise<void> {
    await this.serial(p.name, () => this.discard(new VmLayout(this.dataDir, p.name), p.state.pid))
  }

  private async prepareRestoreUnlocked(o: RestoreOptions): Promise<PreparedRestore> {
    const layout = new VmLayout(this.dataDir, o.name)
    const snap = o.snapshot
    if (snap.version !== 1) throw new Error(`snapshot ${snap.id}: unsupported version ${String(snap.version)}`)
    const disks: DiskLayer[] = snap.layers.filter((l) => l.kind === 'disk-base' || l.kind === 'disk-delta').map((l) => ({ path: l.path, format: l.format ?? 'qcow2' }))
    const devState = snap.layers.find((l) => l.kind === 'device-state')
    const files: Record<string, string> = {}
    for (const l of snap.layers.filter((x) => x.kind === 'memory')) files[l.id ?? MAIN_RAM_ID] = l.path
    if (!disks.length || !devState || !files[MAIN_RAM_ID]) throw new Error(`snapshot ${snap.id} lacks a disk, memory or device-state layer`)
    for (const b of ramBlocks(snap.machine)) {
      if (!files[b.id]) throw new Error(`snapshot ${snap.id} has no memory layer for RAM block ${b.id}`)
    }
    for (const l of snap.layers) {
      const st = await stat(l.path).catch(() => undefined)
      if (!st) throw new Error(`snapshot ${snap.id}: ${l.kind} layer ${l.path} is missing`)
      if (st.size !== l.size) throw new Error(`snapshot ${snap.id}: ${l.kind} layer ${l.path} is ${st.size} bytes, expected ${l.size}`)
    }
    if (await exists(layout.dir)) throw new Error(`a VM named "${o.name}" already exists here; pick another name`)
    const kernel = snap.layers.find((l) => l.kind === 'boot' && l.id === 'kernel')?.path
    const initrd = snap.layers.find((l) => l.kind === 'boot' && l.id === 'initrd')?.path
    const spec: MachineSpec = { ...snap.machine, diskLayers: disks, boot: { ...snap.machine.boot, kernel, initrd }, nics: snap.machine.nics.map((n) => ({ ...n })) }
    const state: VmState = {
      ...newVmState({ name: o.name, hostname: o.hostname ?? o.name, accel: this.accel, activeOverlay: layout.overlay(0), spec }, randomUUID()),
      source: snap.id,
      sourceVm: snap.source,
      ramFiles: files,
      starting: true
    }
    await mkdir(layout.dir, { recursive: true })
    try {
      const top = disks[disks.length - 1]!
      await this.img.createOverlay(state.activeOverlay, top.path, top.format, spec.diskSizeBytes)
      const t0 = performance.now()
      await this.launch(layout, state, { kind: 'file', share: false, files }, true)
      await writeState(layout.state, state)
      const q = await this.qmp(o.name)
      await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: snap.deviceState !== 'ram-stripped' }] })
      return { name: o.name, options: o, state, deviceStatePath: devState.path, launchMs: performance.now() - t0 }
    } catch (err) {
      throw await this.failedRestore(o.name, snap.id, layout, state, err as Error)
    }
  }

  private async finishRestoreUnlocked(p: PreparedRestore): Promise<RestoreResult> {
    const { name, state, options: o } = p
    const layout = new VmLayout(this.dataDir, name)
    try {
      const t0 = performance.now()
      const q = await this.qmp(name)
      await q.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(p.deviceStatePath)}` })
      // The device state was saved by a paused relay, so the clone comes up paused: its NICs go
      // silent before the guest runs a single instruction with the source's MAC.
      const paused = await this.waitIncoming(q, 60_000)
      for (const nic of state.spec.nics) await q.execute('set_link', { name: nic.id, up: false })
      if (paused) await q.execute('cont')
      delete state.starting
      await writeState(layout.state, state)
      const restoreMs = round(p.launchMs + performance.now() - t0)
      const t1 = performance.now()
      await this.giveIdentity(name, layout, state, o.mac)
      const identityMs = round(performance.now() - t1)
      this.log(`vm ${name}: restored from ${o.snapshot.id} in ${restoreMs} ms, identity in ${identityMs} ms`)
      return { vm: await this.info(state, true), restoreMs, identityMs }
    } catch (err) {
      throw await this.failedRestore(name, o.snapshot.id, layout, state, err as Error)
    }
  }

  /** Removes a clone whose restore failed; the error says why, with QEMU's last words if it died. */
  private async failedRestore(name: string, snapshotId: string, layout: VmLayout, state: VmState, err: Error): Promise<Error> {
    const dead = state.pid !== 0 && !(await isOurQemu(state.pid, layout.dir))
    const tail = dead ? (await readFile(layout.console, 'utf8').catch(() => '')).trim().split('\n').slice(-8).join(' | ') : ''
    await this.discard(layout, state.pid)
    return new Error(`restore of ${name} from ${snapshotId} failed: ${err.message}${dead ? `; QEMU exited, console ends with: ${tail || '(empty)'}` : ''}`)
  }

  /**
   * A restored clone's own name, hostname and MAC (its vmgenid is fresh on the command line).
   * The guest sets its name and hostname, and moves its NIC to the new MAC itself: virtio-net
   * passes the guest's change to QEMU, which checks it (query-rx-filter) before the link comes
   * back up. A guest that cannot (an image without the vmesh init) gets a new NIC by hot-plug
   * instead (swapNic), which costs the guest a PCI hot-plug and an eject: about 1 s more per 8
   * clones started at once on TCG. The answer also proves the guest runs after the restore.
   */
  private async giveIdentity(name: string, layout: VmLayout, state: VmState, mac?: string): Promise<void> {
    const q = await this.qmp(name)
    const newMac = mac ? checkMac(mac) : randomMac(randomBytes)
    const nic = state.spec.nics.length === 1 ? state.spec.nics[0] : undefined
    const change = nic ? { from: nic.mac, to: newMac } : undefined
    // A request may be lost: a guest whose init closes its port at end of file (the vmesh init
    // before it kept the port open) drops what is written while it reopens. So the request is
    // written again after 1 s, 2 s, 4 s... under the same id: a busy guest's slow answer to the
    // first copy still counts. A new request per attempt made a guest that needed more than 1 s
    // run the command twice (identity 1.3-1.6 s instead of 0.6-0.9 s with 8 clones on 2 cores).
    await retry(() => this.guest(name).setIdentity(name, state.hostname, 15_000, change, 1000), 45_000)
    if (nic && (await this.nicMac(q, nic.id)) === newMac) {
      state.spec.nics = [{ ...nic, mac: newMac }]
      await writeState(layout.state, state)
      await q.execute('set_link', { name: nic.id, up: true })
      return
    }
    this.log(`vm ${name}: the guest did not take MAC ${newMac} itself; giving it a new NIC`)
    await this.swapNic(name, layout, state, newMac)
  }

  /** The MAC a NIC answers to now, as QEMU sees it (the guest may have changed it). */
  private async nicMac(q: QmpClient, nicId: string): Promise<string | undefined> {
    const filters = await q.execute<Array<{ name: string; 'main-mac'?: string }>>('query-rx-filter', { name: nicId }).catch(() => [])
    return filters.find((f) => f.name === nicId)?.['main-mac']?.toLowerCase()
  }

  /**
   * Gives a clone a new NIC with `newMac` and asks the guest to release the snapshot's NIC,
   * whose link is already down so the source's MAC is never heard twice. The old NIC's removal
   * completes in the background (finishUnplug): the guest's ACPI eject takes 0.5-4 s under TCG
   * on a busy host.
   */
  private async swapNic(name: string, layout: VmLayout, state: VmState, newMac: string): Promise<void> {
    const q = await this.qmp(name)
    const spec = state.spec
    const slot = Math.max(FIRST_NIC_SLOT - 1, ...spec.nics.map((n) => n.slot)) + 1
    const nicId = `nic${slot - FIRST_NIC_SLOT}`
    const old = spec.nics
    for (const nic of old) await q.execute('set_link', { name: nic.id, up: false })
    await q.execute('netdev_add', { type: 'user', id: `net-${nicId}`, restrict: true })
    await q.execute('device_add', { driver: 'virtio-net-pci', id: nicId, netdev: `net-${nicId}`, mac: newMac, addr: pciAddr(slot) })
    spec.nics = [...old, { id: nicId, mac: newMac, slot }]
    await writeState(layout.state, state)
    for (const nic of old) {
      const since = q.events.length
      await q.execute('device_del', { id: nic.id })
      void this.finishUnplug(name, nic.id, q, since)
    }
  }

  /** Once the guest released an unplugged NIC: drop its netdev and its entry in the VM's state. */
  private async finishUnplug(name: string, nicId: string, q: QmpClient, since: number): Promise<void> {
    const outcome = await q
      .waitEvent('DEVICE_DELETED', (e) => e.data.device === nicId, 60_000, since)
      .then(() => 'deleted', (err: Error) => (/closed/.test(err.message) ? 'gone' : 'timeout'))
    if (outcome === 'gone') return // the VM was destroyed meanwhile
    if (outcome === 'timeout') {
      this.log(`vm ${name}: guest has not released ${nicId} after 60 s; its link stays down`)
      return
    }
    await this.serial(name, async () => {
      await q.execute('netdev_del', { id: `net-${nicId}` }).catch(() => {})
      const layout = new VmLayout(this.dataDir, name)
      const state = await readState(layout.state).catch(() => undefined)
      if (!state) return
      state.spec.nics = state.spec.nics.filter((n) => n.id !== nicId)
      await writeState(layout.state, state)
    }).catch((err: Error) => this.log(`vm ${name}: recording the removal of ${nicId} failed: ${err.message}`))
  }

  // ---- hot-plug -----------------------------------------------------------------------------

  async hotplug(name: string, req: HotplugRequest): Promise<VmInfo> {
    return this.serial(name, () => this.hotplugUnlocked(name, req))
  }

  private async hotplugUnlocked(name: string, req: HotplugRequest): Promise<VmInfo> {
    const layout = new VmLayout(this.dataDir, name)
    const state = await this.runningState(name)
    const spec = state.spec
    const q = await this.qmp(name)
    if (req.cpus !== undefined) {
      const have = totalCpus(spec)
      if (req.cpus < have) throw new Error(`${name} has ${have} vCPUs; removing vCPUs is not supported`)
      if (req.cpus > spec.maxCpus) throw new Error(`${name} can grow to at most ${spec.maxCpus} vCPUs (maxcpus), asked for ${req.cpus}`)
      const slots = await q.execute<Array<{ type: string; props: Record<string, number>; 'qom-path'?: string }>>('query-hotpluggable-cpus')
      const free = slots.filter((s) => !s['qom-path']).sort((a, b) => (a.props['socket-id'] ?? 0) - (b.props['socket-id'] ?? 0))
      for (let i = have; i < req.cpus; i++) {
        const slot = free.shift()
        if (!slot) throw new Error(`no free vCPU slot left in ${name}`)
        const props = { ...slot.props }
        delete props['node-id']
        const id = `cpu${props['socket-id'] ?? i}`
        await q.execute('device_add', { driver: slot.type, id, ...props })
        spec.hotCpus.push({ id, type: slot.type, props })
        await writeState(layout.state, state)
      }
    }
    if (req.memMiB !== undefined) {
      const have = totalMemMiB(spec)
      const add = req.memMiB - have
      if (add < 0) throw new Error(`${name} has ${have} MiB; removing memory is not supported`)
      if (add % MEM_BLOCK_MIB) throw new Error(`memory can grow in steps of ${MEM_BLOCK_MIB} MiB; ${name} has ${have} MiB, asked for ${req.memMiB}`)
      if (req.memMiB > spec.maxMemMiB) throw new Error(`${name} can grow to at most ${spec.maxMemMiB} MiB (maxmem), asked for ${req.memMiB}`)
      if (add > 0) {
        if (spec.dimms.length >= spec.slots) throw new Error(`${name} has no free memory slot (${spec.slots} used)`)
        const id = `dimm${spec.dimms.length}`
        await q.execute('object-add', { 'qom-type': 'memory-backend-ram', id: `mem-${id}`, size: add * 1024 * 1024 })
        try {
          await q.execute('device_add', { driver: 'pc-dimm', id, memdev: `mem-${id}` })
        } catch (err) {
          await q.execute('object-del', { id: `mem-${id}` }).catch(() => {})
          throw err
        }
        const devs = await q.execute<Array<{ data: { id?: string; addr: number } }>>('query-memory-devices')
        spec.dimms.push({ id, sizeMiB: add, addr: devs.find((d) => d.data.id === id)?.data.addr })
        await writeState(layout.state, state)
      }
    }
    this.log(`vm ${name}: now ${totalCpus(spec)} vCPU, ${totalMemMiB(spec)} MiB`)
    return this.info(state, true)
  }

  // ---- destroy, list, inspect ---------------------------------------------------------------

  /** Kills the VM's QEMU and deletes its directory (overlays, sockets, logs). Snapshots stay. */
  async destroy(name: string): Promise<void> {
    return this.serial(name, () => this.destroyUnlocked(name))
  }

  private async destroyUnlocked(name: string): Promise<void> {
    const layout = new VmLayout(this.dataDir, name)
    if (!(await exists(layout.dir))) throw new Error(`no VM named "${name}" on this host`)
    const state = await readState(layout.state).catch(() => undefined)
    await this.discard(layout, state?.pid ?? 0)
    this.log(`vm ${name}: destroyed`)
  }

  async list(): Promise<VmInfo[]> {
    const names = await readdir(vmsDir(this.dataDir)).catch(() => [] as string[])
    const out: VmInfo[] = []
    for (const n of names.sort()) {
      try {
        checkVmName(n)
        const state = await readState(new VmLayout(this.dataDir, n).state)
        out.push(await this.info(state))
      } catch {
        // Half-created or foreign directory: not a VM.
      }
    }
    return out
  }

  async get(name: string): Promise<VmInfo> {
    return this.info(await readState(new VmLayout(this.dataDir, name).state))
  }

  async consoleLog(name: string): Promise<string> {
    return readFile(new VmLayout(this.dataDir, name).console, 'utf8')
  }

  /** The VM's control channel; one connection per VM, kept open (see guest-channel.ts). */
  guest(name: string): GuestChannel {
    let ch = this.channels.get(name)
    if (ch === undefined) {
      ch = new GuestChannel(new VmLayout(this.dataDir, name).controlSocket)
      this.channels.set(name, ch)
    }
    return ch
  }

  async health(name: string): Promise<GuestHealth> {
    return this.guest(name).health()
  }

  /** Host memory of the VM's QEMU process: PSS counts shared pages divided among sharers. */
  async hostMemory(name: string): Promise<{ pssKiB: number; rssKiB: number }> {
    const state = await this.runningState(name)
    return processMemory(state.pid)
  }

  /** The VM generation id QEMU gives the guest (a clone gets a fresh one so its RNG reseeds). */
  async generationId(name: string): Promise<string> {
    await this.runningState(name)
    const r = await (await this.qmp(name)).execute<{ guid: string }>('query-vm-generation-id')
    return r.guid
  }

  /** Paths of the VM's own files (overlay, sockets, log), for checks that nothing is left behind. */
  vmDir(name: string): string {
    return new VmLayout(this.dataDir, name).dir
  }

  /** Closes QMP connections (the VMs keep running). */
  close(): void {
    for (const q of this.qmps.values()) q.close()
    this.qmps.clear()
    for (const c of this.channels.values()) c.close()
    this.channels.clear()
  }

  // ---- snapshots on disk --------------------------------------------------------------------

  /** Reads a snapshot this host took (its snapshot.json), checking that its layers are all there. */
  async loadSnapshot(id: string): Promise<Snapshot> {
    const layout = new SnapshotLayout(this.dataDir, id)
    const text = await readFile(layout.manifest, 'utf8').catch(() => {
      throw new Error(`no snapshot ${id} on this host`)
    })
    const snap = parseSnapshot(text)
    for (const l of snap.layers) {
      const st = await stat(l.path).catch(() => undefined)
      if (st?.size !== l.size) throw new Error(`snapshot ${id}: ${l.kind} layer ${l.path} is ${st ? `${st.size} bytes, expected ${l.size}` : 'missing'}`)
    }
    return snap
  }

  async listSnapshots(): Promise<Snapshot[]> {
    const ids = await readdir(join(this.dataDir, 'snapshots')).catch(() => [] as string[])
    const out: Snapshot[] = []
    for (const id of ids.sort()) {
      const snap = await this.loadSnapshot(id).catch(() => undefined)
      if (snap) out.push(snap)
    }
    return out
  }

  /** Deletes a snapshot's files, refusing while a VM here still uses one of its disk layers. */
  async deleteSnapshot(id: string): Promise<void> {
    const layout = new SnapshotLayout(this.dataDir, id)
    if (!(await exists(layout.dir))) throw new Error(`no snapshot ${id} on this host`)
    const users: string[] = []
    for (const n of await readdir(vmsDir(this.dataDir)).catch(() => [] as string[])) {
      const st = await readState(new VmLayout(this.dataDir, n).state).catch(() => undefined)
      const paths = [...(st?.spec.diskLayers.map((l) => l.path) ?? []), ...Object.values(st?.ramFiles ?? {})]
      if (paths.some((p) => p.startsWith(layout.dir + '/'))) users.push(n)
    }
    if (users.length) throw new Error(`snapshot ${id} is in use by ${users.join(', ')}; destroy those VMs first`)
    await rm(layout.dir, { recursive: true, force: true })
  }

  // ---- internals ----------------------------------------------------------------------------

  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(name, tail)
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name)
    })
    return run
  }


  private async launch(layout: VmLayout, state: VmState, ram: RamBacking, incoming: boolean, paused = false): Promise<void> {
    const args = qemuArgs({
      name: state.name,
      accel: state.accel,
      spec: state.spec,
      ram,
      vmgenid: state.vmgenid,
      incoming,
      paused,
      paths: { qmpSocket: layout.qmpSocket, controlSocket: layout.controlSocket, console: layout.console, pidFile: layout.pidFile, activeOverlay: state.activeOverlay }
    })
    state.pid = await startQemu(this.qemu, args, layout.pidFile)
  }

  private async qmp(name: string): Promise<QmpClient> {
    const cached = this.qmps.get(name)
    if (cached) return cached
    const q = await QmpClient.connect(new VmLayout(this.dataDir, name).qmpSocket)
    q.once('close', () => {
      if (this.qmps.get(name) === q) this.qmps.delete(name)
    })
    this.qmps.set(name, q)
    return q
  }

  private async runningState(name: string): Promise<VmState> {
    const layout = new VmLayout(this.dataDir, name)
    const state = await readState(layout.state).catch(() => {
      throw new Error(`no VM named "${name}" on this host`)
    })
    if (!(await isOurQemu(state.pid, layout.dir))) throw new Error(`VM "${name}" is not running (its QEMU, pid ${state.pid}, is gone); destroy it and create or clone again`)
    return state
  }

  private async activeNode(q: QmpClient): Promise<string> {
    const blocks = await q.execute<Array<{ qdev?: string; inserted?: { 'node-name'?: string } }>>('query-block')
    const disk = blocks.find((b) => b.qdev?.includes('disk0'))
    const node = disk?.inserted?.['node-name']
    if (!node) throw new Error('cannot find the disk node of device disk0')
    return node
  }

  private async waitMigration(q: QmpClient, want: string, sinceIndex: number, timeoutMs: number, poll = false): Promise<void> {
    if (poll) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const m = await q.execute<{ status?: string; 'error-desc'?: string }>('query-migrate')
        if (m.status === want) return
        if (m.status === 'failed' || m.status === 'cancelled') throw new Error(`migration ${m.status}: ${m['error-desc'] ?? 'no reason given'}`)
        if (Date.now() > deadline) throw new Error(`migration did not reach ${want} in ${timeoutMs} ms (status ${m.status})`)
        await new Promise((r) => setTimeout(r, 10))
      }
    }
    const ev: QmpEvent = await q.waitEvent('MIGRATION', (e) => [want, 'failed', 'cancelled'].includes(String(e.data.status)), timeoutMs, sinceIndex)
    if (ev.data.status !== want) {
      const m = await q.execute<{ 'error-desc'?: string }>('query-migrate').catch(() => ({}) as { 'error-desc'?: string })
      throw new Error(`migration ${String(ev.data.status)}: ${m['error-desc'] ?? 'no reason given'}`)
    }
  }

  /** `cont` right after MIGRATION completed can race QEMU's cleanup (run state still finish-migrate). */
  private async contAfterMigration(q: QmpClient): Promise<void> {
    const deadline = Date.now() + 5000
    for (;;) {
      try {
        await q.execute('cont')
        return
      } catch (err) {
        if (!(err instanceof QmpError) || !/not finalized/i.test(err.desc) || Date.now() > deadline) throw err
        await new Promise((r) => setImmediate(r))
      }
    }
  }

  /** Waits for an incoming migration to finish; true if the guest is left paused (the relay was). */
  private async waitIncoming(q: QmpClient, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const s = await q.execute<{ status: string }>('query-status')
      if (s.status === 'running') return false
      if (s.status === 'paused') {
        const m = await q.execute<{ status?: string }>('query-migrate')
        if (m.status === 'completed') return true
      }
      if (s.status !== 'inmigrate' && s.status !== 'paused' && s.status !== 'prelaunch') {
        const m = await q.execute<{ 'error-desc'?: string }>('query-migrate').catch(() => ({}) as { 'error-desc'?: string })
        throw new Error(`guest is ${s.status} instead of running${m['error-desc'] ? `: ${m['error-desc']}` : ''}`)
      }
      if (Date.now() > deadline) throw new Error(`guest not running after ${timeoutMs} ms (status ${s.status})`)
      await new Promise((r) => setTimeout(r, 2))
    }
  }

  private async waitGuest(layout: VmLayout, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const ch = this.guest(layout.name)
    let last: unknown
    while (Date.now() < deadline) {
      const pid = Number((await readFile(layout.pidFile, 'utf8').catch(() => '0')).trim())
      if (!(await isOurQemu(pid, layout.dir))) {
        const tail = (await readFile(layout.console, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ')
        throw new Error(`QEMU exited while the guest was booting; console ends with: ${tail || '(empty)'}`)
      }
      try {
        await ch.ping(Math.min(5000, Math.max(500, deadline - Date.now())))
        return
      } catch (err) {
        last = err
        await new Promise((r) => setTimeout(r, 200))
      }
    }
    throw new Error(`guest did not come up within ${timeoutMs} ms: ${(last as Error)?.message ?? ''}`)
  }

  private async discard(layout: VmLayout, pid: number): Promise<void> {
    const q = this.qmps.get(layout.name)
    q?.close()
    this.qmps.delete(layout.name)
    this.channels.get(layout.name)?.close()
    this.channels.delete(layout.name)
    if (!pid) pid = Number((await readFile(layout.pidFile, 'utf8').catch(() => '0')).trim())
    if (pid) await stopQemu(pid, layout.dir)
    await rm(layout.dir, { recursive: true, force: true })
  }

  private async checkFile(path: string, what: string): Promise<void> {
    const st = await stat(path).catch(() => undefined)
    if (!st?.isFile()) throw new Error(`${what} ${path} does not exist or is not a file`)
  }

  private async info(state: VmState, knownRunning = false): Promise<VmInfo> {
    const layout = new VmLayout(this.dataDir, state.name)
    const alive = knownRunning || (await isOurQemu(state.pid, layout.dir))
    const info: VmInfo = {
      name: state.name,
      hostname: state.hostname,
      state: alive ? (state.starting === true ? 'starting' : 'running') : 'stopped',
      pid: state.pid,
      accel: state.accel,
      cpus: totalCpus(state.spec),
      memMiB: totalMemMiB(state.spec),
      mac: state.spec.nics[state.spec.nics.length - 1]?.mac,
      dir: layout.dir,
      console: layout.console
    }
    if (state.source) info.source = state.source
    if (state.sourceVm) info.sourceVm = state.sourceVm
    return info
  }
}

const LAYER_KINDS: ReadonlySet<string> = new Set(['disk-base', 'disk-delta', 'memory', 'device-state', 'boot'])

/** Parses and checks a snapshot description (from disk or from another host's manifest). */
export function parseSnapshot(text: string): Snapshot {
  const j = JSON.parse(text) as Snapshot
  if (j.version !== 1) throw new Error(`snapshot: unsupported version ${String(j.version)}`)
  if (typeof j.id !== 'string' || !Array.isArray(j.layers) || typeof j.machine !== 'object' || j.machine === null) throw new Error('snapshot: missing id, layers or machine')
  if (j.layers.length > 1024) throw new Error(`snapshot ${j.id}: too many layers (${j.layers.length})`)
  for (const l of j.layers) {
    if (!LAYER_KINDS.has(l.kind) || typeof l.path !== 'string' || !Number.isSafeInteger(l.size) || l.size < 0) throw new Error(`snapshot ${j.id}: malformed layer ${JSON.stringify(l).slice(0, 200)}`)
  }
  return j
}

/**
 * Retries an idempotent guest request. Each attempt opens a new connection, and a reconnect also
 * wakes a guest whose control loop missed the previous one (seen rarely on busy TCG hosts).
 */
async function retry<T>(fn: () => Promise<T>, totalMs: number): Promise<T> {
  const deadline = Date.now() + totalMs
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false
  )
}

async function sizeOf(p: string): Promise<number> {
  return (await stat(p)).size
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10
}
