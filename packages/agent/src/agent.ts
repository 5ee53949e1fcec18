// The vmesh agent: one per host. Wires the mesh, membership and the control API together and
// keeps its state (identity, incarnation) in the data directory.
import { mkdir, readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { createMeshNode, loadClusterKey, loadIncarnation, loadOrCreateIdentity, Membership, meshConfig, MESH_TOPICS, ResourceSampler, DEFAULT_PORT } from '@vmesh/mesh'
import type { MeshConfig, MeshNode, Resources } from '@vmesh/mesh'
import { ChunkStore, ImageCatalogue, ManifestStore } from '@vmesh/store'
import type { Accelerator } from '@vmesh/hypervisor'
import { VmService } from './vm-service.js'
import { PlacementService, candidatesFromView } from '@vmesh/placement'
import type { HostResources } from '@vmesh/placement'
import { missingBytes, decodeManifest } from '@vmesh/store'
import { CONTROL_SOCKET } from './control-protocol.js'
import { ControlServer } from './control-server.js'
import type { ControlHandler } from './control-server.js'
import { controlHandlers } from './control-handlers.js'
import { rateLimitsOf, startSwarm } from './image-handlers.js'
import { sweepKeptFiles } from './image-disk.js'
import { parseSwarmTuning, SWARM_TUNING_ENV, type SwarmService } from '@vmesh/swarm'
import { Logger } from './logger.js'
import { ChunkCollector } from './chunk-gc.js'
import type { LogLevel } from './logger.js'

export const AGENT_VERSION = '0.1.0'

export interface AgentOptions {
  dataDir: string
  clusterKeyPath: string
  /** Multiaddrs to listen on; default TCP port 7946 on all interfaces. */
  listen?: string[]
  bootstrap?: string[]
  name?: string
  logLevel?: LogLevel
  mesh?: Partial<MeshConfig>
  /** Most bytes the chunk store may hold (default: unlimited, bounded by the disk). */
  storeQuotaBytes?: number
  /** QEMU accelerator: kvm, tcg, or auto (kvm only where it really works). */
  accel?: Accelerator | 'auto'
  /** Swarm caps, tc-style ("200mbit"); default VMESH_UPLOAD_RATE / VMESH_DOWNLOAD_RATE, else none. */
  uploadRate?: string
  downloadRate?: string
}

export const defaultListen = [`/ip4/0.0.0.0/tcp/${DEFAULT_PORT}`]

export class Agent {
  readonly log: Logger
  readonly startedAt = Date.now()
  node!: MeshNode
  membership!: Membership
  /** Content-addressed chunks and the manifests (images, snapshots) made of them. */
  store!: ChunkStore
  manifests!: ManifestStore
  images!: ImageCatalogue
  /** Deletes chunks no manifest references: at start-up, periodically, after `snapshot rm`. */
  collector!: ChunkCollector
  /** QEMU VMs on this host. */
  vms!: VmService
  /** Bids and reservations for clone placement, and the elections this host runs. */
  placement!: PlacementService
  private sampler!: ResourceSampler
  /** This host's name in the cluster. */
  name = ''
  /** The control API's handlers, also called directly when the pipeline acts on this host. */
  handlers: Record<string, ControlHandler> = {}
  /** Set once placement runs here: turns a reservation into running VMs (or frees it). */
  releaseReservation?: (reservationId: string) => void
  /** Ids of manifests this host holds completely, advertised so others know where to fetch. */
  completeManifests: string[] = []
  /** Moves manifests' chunks between hosts (image push, clone transfers). */
  swarm!: SwarmService
  private control!: ControlServer
  private stopping: Promise<void> | undefined

  constructor (readonly opts: AgentOptions) {
    this.log = new Logger(opts.logLevel ?? 'info')
  }

  get socketPath (): string {
    return join(this.opts.dataDir, CONTROL_SOCKET)
  }

  async start (): Promise<void> {
    const { dataDir } = this.opts
    const rateLimits = rateLimitsOf(this.opts)
    // Checked before anything starts: a bad override is refused with its reason.
    const swarmTuning = parseSwarmTuning(process.env[SWARM_TUNING_ENV])
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const clusterKey = await loadClusterKey(this.opts.clusterKeyPath)
    const privateKey = await loadOrCreateIdentity(dataDir)
    const config = meshConfig(this.opts.mesh)
    const name = validName(this.opts.name ?? hostname())
    this.name = name
    this.node = await createMeshNode({
      privateKey,
      clusterKey,
      listen: this.opts.listen ?? defaultListen,
      topics: MESH_TOPICS,
      maxMessageBytes: config.maxMessageBytes
    })
    const storeDir = join(dataDir, 'store')
    this.store = await ChunkStore.open({
      dir: storeDir,
      quotaBytes: this.opts.storeQuotaBytes,
      onCorrupt: (err) => { this.log.warn(`discarded a corrupt chunk: ${err.message}`) }
    })
    this.manifests = await ManifestStore.open({ dir: storeDir })
    this.images = await ImageCatalogue.open({ dir: storeDir })
    this.vms = await VmService.open({
      dataDir,
      store: this.store,
      manifests: this.manifests,
      log: this.log,
      accel: this.opts.accel,
      onChange: () => { this.membership?.advertiseSoon() }
    })
    this.sampler = new ResourceSampler(dataDir, () => this.vms.accel.accel)
    const incarnation = (await loadIncarnation(dataDir)) + 1
    this.membership = new Membership({
      node: this.node,
      privateKey,
      name,
      dataDir,
      config,
      incarnation,
      agentVersion: AGENT_VERSION,
      resources: this.sampler,
      extras: () => {
        const running = this.vms.reserved()
        const leased = this.placement?.ledger.totals() ?? { vcpusReserved: 0, memReservedMib: 0 }
        return {
          vms: this.vms.summaries(),
          images: this.completeManifests.map((id) => Buffer.from(id, 'hex')),
          vcpusReserved: running.vcpus + leased.vcpusReserved,
          memReservedMib: running.memMiB + leased.memReservedMib
        }
      },
      log: (level, msg) => { this.log.log(level, msg) }
    })
    this.swarm = await startSwarm(this, rateLimits, swarmTuning)
    this.collector = new ChunkCollector(this.store, this.manifests, this.log, this.membership.counters)
    this.handlers = controlHandlers(this)
    this.control = new ControlServer(this.handlers, this.membership.counters, this.log)
    try {
      await this.control.listenUnix(this.socketPath)
    } catch (err) {
      await this.node.stop()
      throw err
    }
    await this.control.serveLibp2p(this.node)
    this.placement = new PlacementService({
      node: this.node,
      view: () => candidatesFromView(this.membership.view),
      hostState: async () => ({
        name,
        resources: hostResources(await this.sampler.sample()),
        vms: this.vms.local().map((v) => ({ state: v.state, cpus: v.cpus, memMib: v.memMiB })),
        missingBytes: async (task) => await this.missingBytesFor(task.manifestId, task.manifest) ?? task.manifestBytes
      }),
      counters: this.membership.counters,
      log: (level, msg) => { this.log.log(level, msg) },
      onReservationsChange: () => { this.membership.advertiseSoon() }
    })
    this.releaseReservation = (id) => { this.placement.ledger.release(id) }
    await this.placement.start()
    await this.membership.start()
    this.collector.start()
    // Snapshot directories and image disks kept for VMs destroyed while this agent was down.
    void sweepKeptFiles(this).catch((err: Error) => { this.log.warn(`sweep of removed snapshots and images failed: ${err.message}`) })
    const addrs = this.node.getMultiaddrs().map((a) => a.toString())
    this.log.info(`agent ${name} ${this.node.peerId.toString()} incarnation ${incarnation} listening on ${addrs.join(' ')}`)
    const bootstrap = this.opts.bootstrap ?? []
    if (bootstrap.length > 0) {
      const joined = await this.membership.join(bootstrap)
      if (joined === 0) this.log.warn('no bootstrap address answered; retrying in the background')
    }
  }

  /** Bytes of a snapshot this host does not hold, from its manifest (ours, or the one in the bid). */
  async missingBytesFor (manifestId: string, encoded?: Uint8Array): Promise<number | undefined> {
    let manifest
    if (manifestId !== '' && await this.manifests.has(manifestId)) manifest = await this.manifests.load(manifestId)
    else if (encoded !== undefined && encoded.length > 0) manifest = decodeManifest(encoded)
    else return undefined
    return missingBytes(this.store, manifest)
  }

  /** Graceful stop: announce "left", close the control socket, stop libp2p. */
  async stop ({ leave = true }: { leave?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      this.vms.stop()
      this.collector?.stop()
      await this.placement.stop().catch(() => {})
      if (leave) await this.membership.leave().catch(() => {})
      else this.membership.stop()
      await this.control.close(this.socketPath)
      await this.swarm?.stop()
      await this.node.stop()
      this.log.info('agent stopped')
    })()
    await this.stopping
  }
}

function hostResources (r: Resources): HostResources {
  return {
    cpuCores: r.cpuCores ?? 0,
    load1: r.load1 ?? 0,
    memTotalMib: r.memTotalMib ?? 0,
    memFreeMib: r.memFreeMib ?? 0,
    diskTotalMib: r.diskTotalMib ?? 0,
    diskFreeMib: r.diskFreeMib ?? 0,
    ioUtil: r.ioUtil ?? 0,
    accel: r.accel ?? ''
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

export function validName (name: string): string {
  if (!NAME_RE.test(name)) throw new Error(`host name "${name}" is not valid: use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit`)
  return name
}

/** Reads a config file: JSON with the same keys as the flags (dataDir, listen, bootstrap, ...). */
export async function readAgentConfigFile (path: string): Promise<Partial<AgentOptions>> {
  const text = await readFile(path, 'utf8').catch((err: Error) => { throw new Error(`cannot read config file ${path}: ${err.message}`) })
  if (text.length > 64 * 1024) throw new Error(`config file ${path} is larger than 64 KiB`)
  let raw: unknown
  try { raw = JSON.parse(text) } catch (err) { throw new Error(`config file ${path} is not valid JSON: ${(err as Error).message}`) }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`config file ${path} must hold a JSON object`)
  const o = raw as Record<string, unknown>
  const out: Partial<AgentOptions> = {}
  const str = (k: string): string | undefined => {
    if (o[k] === undefined) return undefined
    if (typeof o[k] !== 'string') throw new Error(`config file ${path}: "${k}" must be a string`)
    return o[k]
  }
  const strs = (k: string): string[] | undefined => {
    if (o[k] === undefined) return undefined
    if (!Array.isArray(o[k]) || !(o[k] as unknown[]).every((x) => typeof x === 'string')) throw new Error(`config file ${path}: "${k}" must be an array of strings`)
    return o[k] as string[]
  }
  const known = new Set(['dataDir', 'clusterKey', 'listen', 'bootstrap', 'name', 'logLevel', 'uploadRate', 'downloadRate'])
  for (const k of Object.keys(o)) if (!known.has(k)) throw new Error(`config file ${path}: unknown key "${k}" (known: ${[...known].join(', ')})`)
  const dataDir = str('dataDir'); if (dataDir !== undefined) out.dataDir = dataDir
  const key = str('clusterKey'); if (key !== undefined) out.clusterKeyPath = key
  const listen = strs('listen'); if (listen !== undefined) out.listen = listen
  const bootstrap = strs('bootstrap'); if (bootstrap !== undefined) out.bootstrap = bootstrap
  const name = str('name'); if (name !== undefined) out.name = name
  const level = str('logLevel'); if (level !== undefined) out.logLevel = level as LogLevel
  const up = str('uploadRate'); if (up !== undefined) out.uploadRate = up
  const down = str('downloadRate'); if (down !== undefined) out.downloadRate = down
  return out
}
