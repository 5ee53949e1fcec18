// `vmesh image ...` on the agent: add a file to the store as an image, list images and where they
// are held, push one to other hosts through the swarm (with progress), export it back to a file
// (and remove it everywhere: image-remove.ts).
// Also builds the agent's SwarmService and keeps `completeManifests` (advertised) up to date.
import { open, stat } from 'node:fs/promises'
import { basename, isAbsolute } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { MemberEntry } from '@vmesh/mesh'
import {
  createManifest, importLayer, isComplete, isValidChunkSize, manifestBytes, manifestStoredBytes, materializeLayer, missingBytes, formatBytes,
  ImageCatalogue, ManifestNotFoundError, QuotaExceededError, storeConfig, type Manifest
} from '@vmesh/store'
import { SwarmService, type HostProgress, type PushResult, type PushTarget, type RateLimits, type SwarmConfig } from '@vmesh/swarm'
import type { vmesh } from '@vmesh/wire'
import type { Agent } from './agent.js'
import { ControlError, type ControlContext, type ControlHandler } from './control-server.js'
import { imageRemoveHandler } from './image-remove.js'

/** Progress replies for one host are sent at most this often (state changes always go out). */
const PROGRESS_MIN_INTERVAL_MS = 200

/** Builds and starts the agent's swarm service; marks every manifest it already holds as complete. */
export async function startSwarm (agent: Agent, rateLimits: RateLimits, tuning: Partial<SwarmConfig>): Promise<SwarmService> {
  const swarm = new SwarmService({
    node: agent.node,
    store: agent.store,
    manifests: agent.manifests,
    log: agent.log,
    counters: agent.membership.counters,
    bulkHost: bulkHostOf(agent.opts.listen ?? agent.node.getMultiaddrs().map((a) => a.toString())),
    rateLimits,
    config: tuning,
    onComplete: (id) => { markComplete(agent, id); agent.vms.completeAssembly(id) },
    // A VM snapshot's files are written as its chunks arrive, so clones start right after.
    onTargetStart: async (id) => { await agent.vms.beginAssembly(id) },
    onChunk: (id, hash, data) => { agent.vms.chunkArrived(id, hash, data) },
    onTargetFailed: (id) => { void agent.vms.abortAssembly(id) }
  })
  await swarm.start()
  // A restarted agent advertises what it holds, and resumes any push by fetching only what it lacks.
  for (const id of await agent.manifests.list()) {
    try {
      if (isComplete(agent.store, await agent.manifests.load(id))) markComplete(agent, id)
    } catch (err) {
      agent.log.warn(`manifest ${id.slice(0, 12)} is unreadable: ${(err as Error).message}`)
    }
  }
  return swarm
}

export function markComplete (agent: Agent, id: string): void {
  if (agent.completeManifests.includes(id)) return
  agent.completeManifests.push(id)
  agent.membership?.advertiseSoon()
}

/** The host the bulk listener binds: the first IP of the agent's listen addresses. */
export function bulkHostOf (listen: string[]): string {
  for (const a of listen) {
    try {
      for (const c of multiaddr(a).getComponents()) {
        if ((c.name === 'ip4' || c.name === 'ip6') && c.value !== undefined) return c.value
      }
    } catch { /* not a multiaddr: the agent rejects it elsewhere */ }
  }
  return '0.0.0.0'
}

/**
 * The swarm's caps: --upload-rate / --download-rate (or the config file's uploadRate /
 * downloadRate), else VMESH_UPLOAD_RATE / VMESH_DOWNLOAD_RATE; tc-style rates (200mbit).
 */
export function rateLimitsOf (opts: { uploadRate?: string, downloadRate?: string }, env: NodeJS.ProcessEnv = process.env): RateLimits {
  return {
    uploadBytesPerS: opts.uploadRate !== undefined ? parseRate(opts.uploadRate, '--upload-rate') : parseRate(env.VMESH_UPLOAD_RATE, 'VMESH_UPLOAD_RATE'),
    downloadBytesPerS: opts.downloadRate !== undefined ? parseRate(opts.downloadRate, '--download-rate') : parseRate(env.VMESH_DOWNLOAD_RATE, 'VMESH_DOWNLOAD_RATE')
  }
}

/** "200mbit", "1gbit", "500kbit", "25000000" (bytes/s) -> bytes per second; empty -> 0 (unlimited). */
export function parseRate (text: string | undefined, what = 'rate'): number {
  if (text === undefined || text === '') return 0
  const m = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)?$/i.exec(text.trim())
  if (m === null) throw new Error(`${what} "${text}" must look like 200mbit (units bit, kbit, mbit, gbit) or a number of bytes per second`)
  const n = Number(m[1])
  const unit = (m[2] ?? '').toLowerCase()
  const bits = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }[unit]
  return bits === undefined ? n : n * bits / 8
}

export function imageHandlers (agent: Agent): Record<'imageAdd' | 'imageList' | 'imagePush' | 'imageExport' | 'imageRemove', ControlHandler> {
  return {
    imageRemove: imageRemoveHandler(agent, async (ref) => await resolveImage(agent, ref)),

    imageAdd: async (ctx) => {
      const req = ctx.request.imageAdd
      const path = req?.path ?? ''
      if (!isAbsolute(path)) throw new ControlError('BAD_REQUEST', `image path "${path}" must be absolute (the CLI resolves relative paths)`)
      const st = await stat(path).catch(() => undefined)
      if (st === undefined || !st.isFile()) throw new ControlError('NOT_FOUND', `no file at ${path} on ${agent.name}; the agent imports files on its own host`)
      const name = req?.name != null && req.name !== '' ? req.name : defaultImageName(path)
      if (!ImageCatalogue.validName(name)) throw new ControlError('BAD_REQUEST', `image name "${name}" is not allowed: use letters, digits and . _ : @ + -, starting with a letter or digit; pass --name`)
      const chunkSize = req?.chunkSize != null && req.chunkSize !== 0 ? req.chunkSize : storeConfig.DEFAULT_CHUNK_SIZE
      if (!isValidChunkSize(chunkSize)) throw new ControlError('BAD_REQUEST', `chunk size ${chunkSize} must be a power of two from ${storeConfig.MIN_CHUNK_SIZE} to ${storeConfig.MAX_CHUNK_SIZE} bytes`)
      const format = await detectFormat(path)
      const hold = agent.store.hold()
      let id: string
      try {
        const layer = await importLayer(agent.store, path, 'disk-base', { name: format, hold, chunkSize })
        id = await agent.manifests.save(createManifest({ name, layers: [layer] }))
      } catch (err) {
        if (err instanceof QuotaExceededError) throw new ControlError('QUOTA', err.message)
        throw err
      } finally {
        hold.release()
      }
      await agent.images.add(name, id)
      markComplete(agent, id)
      agent.log.info(`image ${name} (${format}, ${formatBytes(st.size)}) added as ${id.slice(0, 12)}`)
      return { imageAdd: { image: await imageInfo(agent, id, name) } }
    },

    imageList: async () => {
      const images: vmesh.v1.ImageInfo.$Properties[] = []
      for (const e of agent.images.list()) {
        images.push(await imageInfo(agent, e.id, e.name, e.addedAtMs).catch(() => ({ id: e.id, name: e.name, holders: holdersOf(agent, e.id) })))
      }
      return { imageList: { images } }
    },

    imagePush: async (ctx) => {
      const req = ctx.request.imagePush
      const id = await resolveImage(agent, req?.ref ?? '')
      const manifest = await loadManifest(agent, id, req?.ref ?? '')
      const targets = chooseTargets(agent, id, req?.hosts ?? '')
      if (targets.length === 0) throw new ControlError('NO_TARGET', `no host to push ${req?.ref ?? id} to (the only one named is this host)`)
      const seeds: PushTarget[] = aliveOthers(agent)
        .filter((e) => holdsComplete(e, id) && !targets.some((t) => t.peerId.equals(e.peerId)))
        .map((e) => ({ peerId: e.peerId, name: e.advert.name }))
      if (!isComplete(agent.store, manifest) && seeds.length === 0) {
        throw new ControlError('INCOMPLETE', `this host (${agent.name}) lacks ${formatBytes(missingBytes(agent.store, manifest))} of ${req?.ref ?? id} and no other host advertises all of it; push from a host that holds it (vmesh image ls)`)
      }
      const result = await agent.swarm.push(id, targets, { signal: ctx.signal, onProgress: transferProgressSender(ctx), seeds })
      return { imagePush: pushReply(id, result) }
    },

    imageExport: async (ctx) => {
      const req = ctx.request.imageExport
      const out = req?.outPath ?? ''
      if (!isAbsolute(out)) throw new ControlError('BAD_REQUEST', `output path "${out}" must be absolute (the CLI resolves relative paths)`)
      const id = await resolveImage(agent, req?.ref ?? '')
      const manifest = await loadManifest(agent, id, req?.ref ?? '')
      if (manifest.layers.length !== 1) throw new ControlError('BAD_REQUEST', `${req?.ref ?? id} has ${manifest.layers.length} layers; export writes single-layer images (from vmesh image add)`)
      if (!isComplete(agent.store, manifest)) throw new ControlError('INCOMPLETE', `this host (${agent.name}) lacks ${formatBytes(missingBytes(agent.store, manifest))} of ${req?.ref ?? id}; push it here first (vmesh image push ${req?.ref ?? id} --hosts ${agent.name})`)
      const layer = manifest.layers[0] as Manifest['layers'][number]
      await materializeLayer(agent.store, layer, out)
      return { imageExport: { id, path: out, bytes: layer.size } }
    }
  }
}

/** Sends a push's per-host progress to the caller: state changes at once, the rest at most every 200 ms per host. */
export function transferProgressSender (ctx: ControlContext): (p: HostProgress) => void {
  const lastSent = new Map<string, { at: number, state: string }>()
  return (p) => {
    const prev = lastSent.get(p.host)
    const now = Date.now()
    if (prev !== undefined && prev.state === p.state && now - prev.at < PROGRESS_MIN_INTERVAL_MS) return
    lastSent.set(p.host, { at: now, state: p.state })
    ctx.send({ transferProgress: progressMessage(p) }).catch(() => {})
  }
}

export function pushReply (id: string, result: PushResult): vmesh.v1.ImagePushReply.$Properties {
  return { id, hosts: result.hosts.map(progressMessage), sourceEgressBytes: result.sourceEgressBytes, elapsedMs: result.elapsedMs }
}

function progressMessage (p: HostProgress): vmesh.v1.TransferProgress.$Properties {
  return {
    host: p.hostBytes ?? new Uint8Array(0),
    hostName: p.name,
    state: p.state,
    bytesDone: p.bytesDone,
    bytesTotal: p.bytesTotal,
    rateBytesPerS: p.rateBytesPerS,
    etaMs: p.etaMs ?? 0,
    error: p.error ?? ''
  }
}

function defaultImageName (path: string): string {
  const base = basename(path).replace(/\.(qcow2|img|raw)$/i, '').replace(/[^A-Za-z0-9._:@+-]/g, '-').replace(/^[^A-Za-z0-9]+/, '')
  return base === '' ? 'image' : base.slice(0, 200)
}

/** qcow2 by its magic ("QFI\xfb"); anything else is stored as raw bytes. Both become one disk-base layer. */
async function detectFormat (path: string): Promise<'qcow2' | 'raw'> {
  const fh = await open(path, 'r')
  try {
    const b = Buffer.alloc(4)
    await fh.read(b, 0, 4, 0)
    return b.equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])) ? 'qcow2' : 'raw'
  } finally {
    await fh.close()
  }
}

/** A name in this host's catalogue, a full id, or an id prefix (8+ hex) of a manifest held here. */
async function resolveImage (agent: Agent, ref: string): Promise<string> {
  if (ref === '') throw new ControlError('BAD_REQUEST', 'name an image: its name, id or an id prefix of 8+ hex characters')
  let id = agent.images.resolve(ref)
  if (id === undefined && /^[0-9a-f]{8,63}$/.test(ref)) {
    // Pushed here from elsewhere: the manifest is in the store, the name is not in our catalogue.
    const ids = (await agent.manifests.list()).filter((m) => m.startsWith(ref))
    if (ids.length > 1) throw new ControlError('AMBIGUOUS', `"${ref}" is the start of ${ids.length} manifests here; give more characters`)
    id = ids[0]
  }
  if (id === undefined) {
    const known = agent.images.list().map((e) => e.name)
    throw new ControlError('NOT_FOUND', `no image "${ref}" on ${agent.name}${known.length > 0 ? `; known: ${known.join(', ')}` : ''} (vmesh image ls)`)
  }
  return id
}

async function loadManifest (agent: Agent, id: string, ref: string): Promise<Manifest> {
  try {
    return await agent.manifests.load(id)
  } catch (err) {
    if (err instanceof ManifestNotFoundError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ControlError('NOT_FOUND', `${agent.name} has no manifest for "${ref}" (${id.slice(0, 16)}…); run the command on a host that holds it`)
    }
    throw err
  }
}

async function imageInfo (agent: Agent, id: string, name: string, addedAtMs?: number): Promise<vmesh.v1.ImageInfo.$Properties> {
  const m = await agent.manifests.load(id)
  return {
    id,
    name,
    sizeBytes: manifestBytes(m),
    storedBytes: manifestStoredBytes(m),
    holders: holdersOf(agent, id),
    createdAtMs: addedAtMs ?? m.createdAtMs
  }
}

function holdsComplete (e: MemberEntry, id: string): boolean {
  const want = Buffer.from(id, 'hex')
  return e.advert.images.some((b) => Buffer.compare(b, want) === 0)
}

/** Peer ids (bytes) of alive hosts whose advert says they hold the manifest completely. */
function holdersOf (agent: Agent, id: string): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const e of agent.membership.view.list()) {
    const self = e.id === agent.membership.selfId
    if (self ? agent.completeManifests.includes(id) : (e.claim.status === 'alive' && holdsComplete(e, id))) out.push(e.advert.peerId)
  }
  return out
}

function aliveOthers (agent: Agent): MemberEntry[] {
  return agent.membership.view.others('alive')
}

/**
 * "all": every alive host but this one; "N": N alive hosts, those that lack the image first;
 * "a,b,c": hosts by name, peer id, or the last 8+ characters of a peer id.
 */
export function chooseTargets (agent: Agent, id: string, spec: string): PushTarget[] {
  const others = aliveOthers(agent).sort((a, b) => a.advert.name.localeCompare(b.advert.name))
  const s = spec.trim()
  const toTarget = (e: MemberEntry): PushTarget => ({ peerId: e.peerId, name: e.advert.name })
  if (s === '' ) throw new ControlError('BAD_REQUEST', 'say which hosts: --hosts all, --hosts N, or --hosts name,name,...')
  if (s === 'all') {
    if (others.length === 0) throw new ControlError('NO_TARGET', 'no other host is alive in the cluster (vmesh members)')
    const lacking = others.filter((e) => !holdsComplete(e, id))
    if (lacking.length === 0) {
      const notAlive = agent.membership.view.list().filter((e) => e.id !== agent.membership.selfId && e.claim.status !== 'alive').map((e) => `${e.advert.name} (${e.claim.status})`)
      throw new ControlError('NO_TARGET', `every alive host already holds the image; nothing to push${notAlive.length > 0 ? `. Not alive: ${notAlive.join(', ')}` : ''}`)
    }
    return lacking.map(toTarget)
  }
  if (/^\d+$/.test(s)) {
    const n = Number(s)
    if (n < 1) throw new ControlError('BAD_REQUEST', '--hosts N needs N ≥ 1')
    const lacking = others.filter((e) => !holdsComplete(e, id))
    if (lacking.length < n) throw new ControlError('NO_TARGET', `asked for ${n} host(s) but only ${lacking.length} alive host(s) lack the image (${others.length} alive besides ${agent.name})`)
    return lacking.slice(0, n).map(toTarget)
  }
  const out: PushTarget[] = []
  for (const word of s.split(',').map((w) => w.trim()).filter((w) => w !== '')) {
    const all = agent.membership.view.list()
    const e = all.find((x) => x.id === word) ?? all.find((x) => x.advert.name === word) ?? (word.length >= 8 ? all.find((x) => x.id.endsWith(word)) : undefined)
    if (e === undefined) throw new ControlError('NOT_FOUND', `no host "${word}" in the cluster; known: ${all.map((x) => x.advert.name).join(', ')}`)
    if (e.id === agent.membership.selfId) continue
    if (e.claim.status !== 'alive') throw new ControlError('NOT_ALIVE', `host ${e.advert.name} is ${e.claim.status}; choose alive hosts (vmesh members)`)
    if (!out.some((t) => t.peerId.equals(e.peerId))) out.push(toTarget(e))
  }
  return out
}
