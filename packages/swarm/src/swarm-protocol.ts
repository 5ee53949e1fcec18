// The swarm's wire protocols (proto/swarm.proto): names, bounds, and strict decoders. Everything
// here comes from the network: every count and length is checked before it is used, and a decoder
// throws a SwarmProtocolError (which the service counts) rather than anything else.
import { pb } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import { Bitfield } from './bitfield.js'

export const SESSION_PROTOCOL = '/vmesh/swarm/session/1.0.0'
export const CHUNK_PROTOCOL = '/vmesh/swarm/chunks/1.0.0'
export const SWARM_VERSION = 1

export const swarmLimits = {
  /** A session frame may carry a whole manifest (the store accepts ≤ 64 MiB encoded). */
  sessionFrameBytes: 64 * 1024 * 1024 + 256 * 1024,
  /** Link frames carry at most a have-map of 4 Mi chunks (512 KiB) and an offer. */
  linkFrameBytes: 1024 * 1024,
  /** Frames on the bulk channel (requests, reply headers) are tiny. */
  bulkFrameBytes: 64 * 1024,
  /** The store's bound on chunks per manifest. */
  maxChunks: 4 * 1024 * 1024,
  maxPeers: 1024,
  maxAddrs: 16,
  maxAddrBytes: 256,
  maxPeerIdBytes: 128,
  maxNameChars: 64,
  maxHaveUpdate: 4096,
  maxRequestIndices: 64,
  maxErrorChars: 1024,
  sessionIdBytes: 16
}

export class SwarmProtocolError extends Error {
  constructor (readonly reason: string, message: string) {
    super(message)
    this.name = 'SwarmProtocolError'
  }
}

/**
 * A short counter name for why a stream was dropped: the protocol rule it broke, or the name of
 * the framing or stream error (InvalidDataLengthError for an oversized frame, StreamResetError...).
 */
export function errorReason (err: unknown): string {
  if (err instanceof SwarmProtocolError) return err.reason
  const name = (err as Error | undefined)?.name
  return typeof name === 'string' && /^[A-Za-z]{1,40}$/.test(name) ? name : 'stream'
}

function decodeOr<T> (what: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw new SwarmProtocolError('malformed', `malformed ${what}: ${(err as Error).message}`)
  }
}

export type SessionFrame = vmesh.v1.SwarmSessionFrame
export type LinkFrame = vmesh.v1.ChunkLinkFrame

export function decodeSessionFrame (bytes: Uint8Array): SessionFrame {
  if (bytes.length > swarmLimits.sessionFrameBytes) throw new SwarmProtocolError('oversized', `session frame of ${bytes.length} bytes exceeds ${swarmLimits.sessionFrameBytes}`)
  const f = decodeOr('session frame', () => pb.SwarmSessionFrame.decode(bytes))
  if (f.body === undefined) throw new SwarmProtocolError('empty', 'session frame has no body')
  return f
}

export function decodeLinkFrame (bytes: Uint8Array): LinkFrame {
  if (bytes.length > swarmLimits.linkFrameBytes) throw new SwarmProtocolError('oversized', `link frame of ${bytes.length} bytes exceeds ${swarmLimits.linkFrameBytes}`)
  const f = decodeOr('link frame', () => pb.ChunkLinkFrame.decode(bytes))
  if (f.body === undefined) throw new SwarmProtocolError('empty', 'link frame has no body')
  return f
}

export interface StartInfo {
  sessionId: string
  /** Empty for a live push (liveCapacity > 0). */
  manifest: Uint8Array
  liveCapacity: number
  peers: Array<{ peerId: Uint8Array, addrs: Uint8Array[], seed: boolean, name: string }>
  uploadBytesPerS: number
}

/** Checks a SwarmStart's counts and lengths (the manifest itself is checked by decodeManifest). */
export function checkStart (s: vmesh.v1.SwarmStart.$Properties): StartInfo {
  const sessionId = s.sessionId ?? new Uint8Array(0)
  const manifest = s.manifest ?? new Uint8Array(0)
  const rawPeers = s.peers ?? []
  if (s.version !== SWARM_VERSION) throw new SwarmProtocolError('version', `swarm version ${s.version} is not supported (this agent speaks ${SWARM_VERSION}); upgrade the older agent`)
  if (sessionId.length !== swarmLimits.sessionIdBytes) throw new SwarmProtocolError('session_id', `session id must be ${swarmLimits.sessionIdBytes} bytes`)
  const liveCapacity = s.liveCapacity ?? 0
  if (liveCapacity > swarmLimits.maxChunks) throw new SwarmProtocolError('live_capacity', `live capacity ${liveCapacity} exceeds ${swarmLimits.maxChunks} chunks`)
  if ((manifest.length === 0) !== (liveCapacity > 0)) throw new SwarmProtocolError('manifest', liveCapacity > 0 ? 'a live start carries no manifest' : 'start carries no manifest')
  if (rawPeers.length === 0 || rawPeers.length > swarmLimits.maxPeers) throw new SwarmProtocolError('peers', `start lists ${rawPeers.length} peers; 1..${swarmLimits.maxPeers} allowed`)
  const peers = rawPeers.map((p) => {
    const peerId = p.peerId ?? new Uint8Array(0)
    const addrs = p.addrs ?? []
    const name = p.name ?? ''
    if (peerId.length === 0 || peerId.length > swarmLimits.maxPeerIdBytes) throw new SwarmProtocolError('peer_id', 'peer id missing or oversized')
    if (addrs.length > swarmLimits.maxAddrs) throw new SwarmProtocolError('addrs', `peer has ${addrs.length} addresses; ${swarmLimits.maxAddrs} allowed`)
    if (addrs.some((a) => a.length === 0 || a.length > swarmLimits.maxAddrBytes)) throw new SwarmProtocolError('addrs', 'peer address empty or oversized')
    if (name.length > swarmLimits.maxNameChars) throw new SwarmProtocolError('name', 'peer name too long')
    return { peerId, addrs, seed: p.seed === true, name }
  })
  if (!peers.some((p) => p.seed)) throw new SwarmProtocolError('peers', 'start lists no seed')
  return { sessionId: Buffer.from(sessionId).toString('hex'), manifest, liveCapacity, peers, uploadBytesPerS: Number(s.uploadBytesPerS ?? 0) }
}

/** Checks a SwarmAnnounce: whole hashes, one size each, at most maxHaveUpdate chunks. */
export function checkAnnounce (a: vmesh.v1.SwarmAnnounce.$Properties): { firstIndex: number, chunks: Array<{ hash: string, size: number }> } {
  const hashes = a.hashes ?? []
  const sizes = a.sizes ?? []
  if (hashes.length > swarmLimits.maxHaveUpdate || hashes.length !== sizes.length) throw new SwarmProtocolError('announce', `announce of ${hashes.length} hashes and ${sizes.length} sizes`)
  if (hashes.some((h) => h.length !== 32)) throw new SwarmProtocolError('announce', 'announced hash is not 32 bytes')
  return { firstIndex: a.firstIndex ?? 0, chunks: hashes.map((h, i) => ({ hash: Buffer.from(h).toString('hex'), size: sizes[i] as number })) }
}

export function checkChunkCount (n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > swarmLimits.maxChunks) throw new SwarmProtocolError('chunk_count', `chunk count ${n} is out of range 0..${swarmLimits.maxChunks}`)
  return n
}

/** Decodes a have-map sent for a manifest with `count` chunks. */
export function decodeHave (bytes: Uint8Array, count: number): Bitfield {
  try {
    return Bitfield.decode(bytes, count)
  } catch (err) {
    throw new SwarmProtocolError('have', (err as Error).message)
  }
}

export function checkIndices (indices: number[], count: number, max: number, what: string): number[] {
  if (indices.length > max) throw new SwarmProtocolError(what, `${what} lists ${indices.length} chunks; ${max} allowed`)
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= count) throw new SwarmProtocolError(what, `${what} names chunk ${i}, outside 0..${count - 1}`)
  }
  return indices
}

export interface ProgressInfo { state: string, bytesDone: number, bytesTotal: number, bytesFetched: number, bytesServed: number, error: string }

export function checkProgress (raw: vmesh.v1.SwarmProgress.$Properties): ProgressInfo {
  // Number(): an absent uint64 decodes as the prototype's default, a Long object made before the
  // wire package switched Long off.
  const p: ProgressInfo = { state: raw.state ?? '', bytesDone: Number(raw.bytesDone ?? 0), bytesTotal: Number(raw.bytesTotal ?? 0), bytesFetched: Number(raw.bytesFetched ?? 0), bytesServed: Number(raw.bytesServed ?? 0), error: raw.error ?? '' }
  if (!['waiting', 'transferring', 'done', 'failed'].includes(p.state)) throw new SwarmProtocolError('progress', `unknown progress state ${JSON.stringify(p.state.slice(0, 32))}`)
  if (p.error.length > swarmLimits.maxErrorChars) throw new SwarmProtocolError('progress', 'progress error text too long')
  for (const n of [p.bytesDone, p.bytesTotal, p.bytesFetched, p.bytesServed]) {
    if (!(Number.isSafeInteger(n) && n >= 0)) throw new SwarmProtocolError('progress', 'progress byte count out of range')
  }
  return p
}

export function encodeSession (frame: vmesh.v1.SwarmSessionFrame.$Properties): Uint8Array {
  return pb.SwarmSessionFrame.encode(frame).finish()
}

export function encodeLink (frame: vmesh.v1.ChunkLinkFrame.$Properties): Uint8Array {
  return pb.ChunkLinkFrame.encode(frame).finish()
}

/**
 * A signal that aborts after `ms` unless cleared. Stream opening takes one of these and clears it
 * once the peer has answered: libp2p keeps the signal given to newStream/dialProtocol for the
 * lazy protocol negotiation, so an AbortSignal.timeout() there later aborted healthy streams of
 * long transfers on a loaded machine ("The operation was aborted due to timeout").
 */
export function openTimeout (ms: number): { signal: AbortSignal, clear: () => void } {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new Error(`no answer within ${ms} ms`)), ms)
  return { signal: controller.signal, clear: () => clearTimeout(timer) }
}
