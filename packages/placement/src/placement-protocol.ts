// The placement protocol, /vmesh/placement/1.0.0: one PlacementRequest frame and one
// PlacementReply frame per stream. The host side (PlacementHost) answers from its ledger; the
// requester side goes through the PlacementTransport seam, whose product implementation is
// Libp2pTransport and whose test implementations are in-process fakes.
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { pb, streamChannel } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import type { PlacementConfig } from './config.js'
import type { Policy, Task } from './cost.js'
import {
  bidFromWire, bidRequestFromWire, checkId, clip, messageLimits, policyToWire, PlacementMessageError,
  reserveReplyFromWire, reserveRequestFromWire, taskToWire
} from './messages.js'
import type { BidFields } from './messages.js'
import type { ReservationLedger } from './reservations.js'

export const PLACEMENT_PROTOCOL = '/vmesh/placement/1.0.0'

/** Counts what was rejected (the mesh's Counters fits). */
export interface CounterSink {
  inc: (name: string, by?: number) => void
}

export type Log = (level: 'debug' | 'info' | 'warn', msg: string) => void

/** A host that may take clones: from the cluster view (alive members, this host included). */
export interface Candidate {
  /** Peer id string. */
  id: string
  name: string
  /** For dialling; fakes may leave it out. */
  peerId?: PeerId
  /** Accelerator from the advert (static), to skip hosts that cannot match without asking. */
  accel?: string
}

export interface BidAsk { electionId: string, task: Task, policy: Policy, count: number }
export interface ReserveAsk { electionId: string, task: Task, count: number, leaseMs: number }
export interface ReserveAnswer { admitted: number, reservationId: string, reason: string }

/** How the requester reaches a host. Every method rejects on timeout, refusal or a bad reply. */
export interface PlacementTransport {
  bid: (host: Candidate, ask: BidAsk, timeoutMs: number, signal?: AbortSignal) => Promise<BidFields>
  reserve: (host: Candidate, ask: ReserveAsk, timeoutMs: number, signal?: AbortSignal) => Promise<ReserveAnswer>
  release: (host: Candidate, which: { reservationId?: string, electionId?: string }, timeoutMs: number) => Promise<number>
}

/** The host side: turns one request frame into one reply frame, never throws. */
export class PlacementHost {
  constructor (private readonly opts: {
    ledger: ReservationLedger
    config: PlacementConfig
    counters?: CounterSink
    log?: Log
  }) {}

  async answer (frame: Uint8Array, remotePeer: string): Promise<Uint8Array> {
    const reply = await this.reply(frame, remotePeer)
    return pb.PlacementReply.encode(reply).finish()
  }

  private async reply (frame: Uint8Array, remotePeer: string): Promise<vmesh.v1.PlacementReply.$Properties> {
    const { config, ledger } = this.opts
    let req: vmesh.v1.PlacementRequest
    try {
      req = pb.PlacementRequest.decode(frame)
    } catch (err) {
      this.count('rejected.placement.decode')
      return { error: `cannot decode the placement request: ${clip((err as Error).message, 200)}` }
    }
    try {
      if (req.bid != null) {
        const ask = bidRequestFromWire(req.bid, config)
        const bid = await ledger.bid(ask.task, ask.count, ask.policy)
        return { bid: { electionId: ask.electionId, name: clip(bid.name, messageLimits.maxNameChars), costs: bid.costs, reason: clip(bid.reason), missingBytes: bid.missingBytes } }
      }
      if (req.reserve != null) {
        const ask = reserveRequestFromWire(req.reserve, config)
        const a = await ledger.admit({ ...ask, owner: remotePeer })
        return { reserved: { admitted: a.admitted, reservationId: a.reservationId, reason: clip(a.reason) } }
      }
      if (req.release != null) {
        const id = checkId(req.release.reservationId, 'reservation id', true)
        const election = checkId(req.release.electionId, 'election id', true)
        let released = 0
        if (id !== '') released = ledger.release(id, remotePeer) ? 1 : 0
        else if (election !== '') {
          for (const r of ledger.list()) if (r.electionId === election && ledger.release(r.id, remotePeer)) released++
        } else throw new PlacementMessageError('release names neither a reservation nor an election')
        return { released: { released } }
      }
      this.count('rejected.placement.empty')
      return { error: 'the placement request carries no bid, reserve or release' }
    } catch (err) {
      if (err instanceof PlacementMessageError) {
        this.count('rejected.placement.invalid')
        return { error: `invalid placement request: ${clip(err.message, 200)}` }
      }
      this.count('placement.host-error')
      this.opts.log?.('warn', `placement request from ${remotePeer} failed: ${(err as Error).message}`)
      return { error: `the host could not answer: ${clip((err as Error).message, 200)}` }
    }
  }

  /** The libp2p stream handler: bounded frame, timeout, always an answer or an abort. */
  async serve (stream: Stream, remotePeer: string): Promise<void> {
    const { config } = this.opts
    const channel = streamChannel(stream, config.maxFrameBytes)
    try {
      const frame = await channel.recv(config.requestTimeoutMs)
      if (frame === undefined) { this.count('rejected.placement.empty'); await channel.close(); return }
      await channel.send(await this.answer(frame, remotePeer))
      await channel.close()
    } catch (err) {
      // Oversized frame, timeout or reset: nothing sensible to answer.
      this.count('rejected.placement.frame')
      stream.abort(err as Error)
    }
  }

  private count (name: string): void {
    this.opts.counters?.inc(name)
  }
}

/** Raised by the transport when the host answered with an error, so the requester can say so. */
export class PlacementRemoteError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'PlacementRemoteError'
  }
}

/** Decodes and checks a reply frame; the transports share it. */
export function decodeReply (frame: Uint8Array | undefined): vmesh.v1.PlacementReply {
  if (frame === undefined) throw new PlacementRemoteError('the host closed the stream without answering')
  let reply: vmesh.v1.PlacementReply
  try {
    reply = pb.PlacementReply.decode(frame)
  } catch (err) {
    throw new PlacementMessageError(`cannot decode the reply: ${(err as Error).message}`)
  }
  if (reply.error !== undefined && reply.error !== null && reply.error !== '') {
    throw new PlacementRemoteError(`refused: ${reply.error.slice(0, messageLimits.maxReasonChars)}`)
  }
  return reply
}

export function encodeBidAsk (ask: BidAsk): Uint8Array {
  return pb.PlacementRequest.encode({ bid: { electionId: ask.electionId, task: taskToWire(ask.task), policy: policyToWire(ask.policy), count: ask.count } }).finish()
}

export function encodeReserveAsk (ask: ReserveAsk): Uint8Array {
  return pb.PlacementRequest.encode({ reserve: { electionId: ask.electionId, task: taskToWire(ask.task), count: ask.count, leaseMs: ask.leaseMs } }).finish()
}

export function encodeRelease (which: { reservationId?: string, electionId?: string }): Uint8Array {
  return pb.PlacementRequest.encode({ release: { reservationId: which.reservationId ?? '', electionId: which.electionId ?? '' } }).finish()
}

/**
 * A transport over frames: `exchange` sends one request frame and returns the reply frame. The
 * libp2p transport and the in-process one differ only in that function.
 */
export function frameTransport (exchange: (host: Candidate, frame: Uint8Array, timeoutMs: number, signal?: AbortSignal) => Promise<Uint8Array | undefined>, config: PlacementConfig, counters?: CounterSink): PlacementTransport {
  const checked = <T>(fn: () => T): T => {
    try {
      return fn()
    } catch (err) {
      if (err instanceof PlacementMessageError) counters?.inc('rejected.placement.reply')
      throw err
    }
  }
  return {
    async bid (host, ask, timeoutMs, signal) {
      const reply = decodeReply(await exchange(host, encodeBidAsk(ask), timeoutMs, signal))
      return checked(() => bidFromWire(reply.bid, ask.electionId, ask.count, config))
    },
    async reserve (host, ask, timeoutMs, signal) {
      const reply = decodeReply(await exchange(host, encodeReserveAsk(ask), timeoutMs, signal))
      return checked(() => reserveReplyFromWire(reply.reserved, ask.count))
    },
    async release (host, which, timeoutMs) {
      const reply = decodeReply(await exchange(host, encodeRelease(which), timeoutMs))
      return checked(() => {
        const n = reply.released?.released ?? 0
        if (!Number.isSafeInteger(n) || n < 0 || n > config.maxReservations) throw new PlacementMessageError('release count out of bounds')
        return n
      })
    }
  }
}

export type PlacementNode = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>

/** The product transport: one libp2p stream per request. */
export function libp2pTransport (node: PlacementNode, config: PlacementConfig, counters?: CounterSink): PlacementTransport {
  return frameTransport(async (host, frame, timeoutMs, signal) => {
    if (host.peerId === undefined) throw new Error(`no peer id to dial ${host.name}`)
    const deadline = Date.now() + timeoutMs
    const timeout = AbortSignal.timeout(timeoutMs)
    const all = signal === undefined ? timeout : AbortSignal.any([timeout, signal])
    let stream: Stream | undefined
    try {
      stream = await node.dialProtocol(host.peerId, PLACEMENT_PROTOCOL, { signal: all })
      const channel = streamChannel(stream, config.maxFrameBytes)
      await channel.send(frame)
      const reply = await channel.recv(Math.max(1, deadline - Date.now()))
      await channel.close().catch(() => {})
      return reply
    } catch (err) {
      stream?.abort(err as Error)
      if (timeout.aborted || Date.now() >= deadline) throw new PlacementRemoteError(`no answer within ${timeoutMs} ms`)
      throw err
    }
  }, config, counters)
}
