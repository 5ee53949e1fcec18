// Serves chunks of a manifest to one puller: answers ChunkLinkOpen with our have-map and a bulk
// offer, tells the puller about chunks we gain (or begin to receive) while the link is open, and
// answers chunk requests on the bulk channel in order. Only verified bytes leave: chunks from the
// cache of verified chunks or readVerified, and chunks still arriving piece by checked piece
// (partial-chunks.ts); a chunk we lack or that fails verification is answered "missing".
import type { Connection, Stream } from '@libp2p/interface'
import { streamChannel, type MessageChannel } from '@vmesh/wire'
import { isHash, pieceHashes } from '@vmesh/store'
import { Bitfield } from './bitfield.js'
import { createBulkOffer } from './bulk-offer.js'
import { HaveBatch } from './have-batch.js'
import type { BulkChannel } from './bulk-channel.js'
import { encodeReplyHeader, RequestParser } from './chunk-wire.js'
import { checkIndices, decodeHave, decodeLinkFrame, encodeLink, errorReason, SWARM_VERSION, SwarmProtocolError, swarmLimits } from './swarm-protocol.js'
import type { SeedHandout } from './seed-handout.js'
import type { PartialChunk } from './partial-chunks.js'

import type { ManifestInfo, SwarmContext } from './swarm-context.js'

const OPEN_TIMEOUT_MS = 10_000

export async function serveChunkLink (ctx: SwarmContext, stream: Stream, connection: Connection): Promise<void> {
  const ch = streamChannel(stream, swarmLimits.linkFrameBytes)
  const remote = connection.remotePeer.toString()
  let info: ManifestInfo
  let sessionId: string
  let pullerHave: Bitfield
  try {
    const frame = await ch.recv(OPEN_TIMEOUT_MS)
    if (frame === undefined) return
    const f = decodeLinkFrame(frame)
    const open = f.open
    if (f.body !== 'open' || open == null) throw new SwarmProtocolError('link_first', `a chunk link must start with open, got ${f.body ?? 'nothing'}`)
    if (open.version !== SWARM_VERSION) throw new SwarmProtocolError('version', `swarm version ${open.version} is not supported (this agent speaks ${SWARM_VERSION})`)
    const session = open.sessionId ?? new Uint8Array(0)
    if (session.length !== swarmLimits.sessionIdBytes) throw new SwarmProtocolError('session_id', `session id must be ${swarmLimits.sessionIdBytes} bytes`)
    sessionId = Buffer.from(session).toString('hex')
    const found = open.live === true ? ctx.live.get(sessionId) : await knownManifest(ctx, open.manifestId ?? new Uint8Array(0))
    if (found === undefined) {
      const what = open.live === true ? `live push ${sessionId.slice(0, 8)}` : `manifest ${Buffer.from(open.manifestId ?? []).toString('hex').slice(0, 16)}…`
      await ch.send(encodeLink({ error: { code: 'NOT_FOUND', message: `this host takes no part in ${what}` } }))
      await ch.close().catch(() => {})
      return
    }
    info = found
    pullerHave = decodeHave(open.have ?? new Uint8Array(0), info.capacity)
  } catch (err) {
    rejectLink(ctx, ch, err, remote)
    return
  }
  await new ChunkLinkServer(ctx, ch, info, remote, sessionId, pullerHave).run()
}

async function knownManifest (ctx: SwarmContext, manifestId: Uint8Array): Promise<ManifestInfo | undefined> {
  if (manifestId.length !== 32) throw new SwarmProtocolError('manifest_id', 'manifest id must be 32 bytes')
  const id = Buffer.from(manifestId).toString('hex')
  if (!isHash(id) || !(await ctx.manifests.has(id))) return undefined
  return await ctx.info(id)
}

function rejectLink (ctx: SwarmContext, ch: MessageChannel, err: unknown, remote: string): void {
  const reason = errorReason(err)
  ctx.counters.inc(`swarm.rejected.link.${reason}`)
  ctx.log.debug(`chunk link from ${remote}: ${(err as Error).message}`)
  ch.abort(err as Error)
}

class ChunkLinkServer {
  /** What the puller knows we have: announced at open or by HaveUpdate since. */
  private readonly announced: Bitfield
  private readonly haves: HaveBatch
  private closed = false
  private readonly onGained = (id: string, index: number, first: boolean): void => {
    if (id !== this.info.id || this.closed || this.announced.has(index)) return
    this.announced.set(index)
    this.haves.add(index, first)
  }

  private readonly handout: SeedHandout
  private readonly releaseHandout: () => void

  constructor (
    private readonly ctx: SwarmContext,
    private readonly ch: MessageChannel,
    private readonly info: ManifestInfo,
    private readonly remote: string,
    sessionId: string,
    pullerHave: Bitfield
  ) {
    this.announced = new Bitfield(info.capacity)
    this.haves = new HaveBatch(async (indices) => await this.ch.send(encodeLink({ have: { indices } })), ctx.config.haveBatchMs, swarmLimits.maxHaveUpdate, () => { this.closed = true })
    const h = ctx.handout(info, sessionId)
    this.handout = h.handout
    this.releaseHandout = h.release
    this.handout.join(remote, pullerHave)
  }

  async run (): Promise<void> {
    const { ctx, info } = this
    // Subscribe before reading the store, so nothing gained in between is missed.
    ctx.hub.on('gained', this.onGained)
    ctx.hub.on('receiving', this.onGained)
    let bulk: BulkChannel | undefined
    try {
      info.chunks.forEach((c, i) => { if (ctx.store.has(c.hash) || ctx.pending.has(c.hash) || ctx.partials.has(c.hash)) this.announced.set(i) })
      const { offer, channel } = createBulkOffer(ctx.listener, { localPeer: ctx.selfId, remotePeer: this.remote })
      await this.ch.send(encodeLink({ accept: { have: this.announced.encode(), chunkCount: info.capacity, bulkOffer: offer } }))
      bulk = await channel
      // The stream ending (puller gone) ends the link too.
      let finished = false
      const b = bulk
      // The puller's have-updates; the stream ending (puller gone) ends the link too.
      void this.readHaves().then(() => { if (!finished) b.destroy() }, (err: Error) => {
        if (err instanceof SwarmProtocolError) ctx.counters.inc(`swarm.rejected.link.${err.reason}`)
        if (!finished) b.destroy()
      })
      await this.serve(bulk)
      finished = true
      this.handout.leave(this.remote, true)
      await bulk.end().catch(() => {})
    } catch (err) {
      this.handout.leave(this.remote, false)
      bulk?.destroy()
      if (err instanceof CutThroughAborted) this.ch.abort(err)
      else if (!this.closed) rejectLink(ctx, this.ch, err, this.remote)
    } finally {
      this.closed = true
      this.haves.stop()
      this.releaseHandout()
      ctx.hub.off('gained', this.onGained)
      ctx.hub.off('receiving', this.onGained)
      await this.ch.close().catch(() => {})
    }
  }

  private async readHaves (): Promise<void> {
    for (;;) {
      const frame = await this.ch.recv()
      if (frame === undefined) return
      const f = decodeLinkFrame(frame)
      if (f.body !== 'have' || f.have == null) throw new SwarmProtocolError('link_frame', `unexpected ${f.body ?? 'empty'} frame from a puller`)
      this.handout.gained(this.remote, checkIndices(f.have.indices ?? [], this.info.capacity, swarmLimits.maxHaveUpdate, 'have update'))
    }
  }

  private async serve (bulk: BulkChannel): Promise<void> {
    const { ctx, info } = this
    const parser = new RequestParser(info.capacity)
    for await (const piece of bulk) {
      for (const req of parser.push(piece)) {
        for (const i of req.indices) await this.send(bulk, i)
        for (let k = 0; k < req.fresh; k++) {
          const i = this.handout.next(this.remote)
          if (i === undefined) await bulk.write(encodeReplyHeader(0, 0, false, true))
          else await this.send(bulk, i, true)
        }
      }
    }
    if (parser.pendingBytes > 0) throw new SwarmProtocolError('bulk_truncated', 'puller ended the bulk channel in the middle of a request')
  }

  /**
   * Sends chunk i with its piece hashes where we know them (a fresh hand-out: we are its seed and
   * compute them; else those it arrived with), so the puller may pass it on as it arrives.
   */
  private async send (bulk: BulkChannel, i: number, fresh = false): Promise<void> {
    const { ctx, info } = this
    const chunk = info.chunks[i]
    // Still arriving here, with the piece hashes the puller's manifest gives: pass it on as its
    // pieces check out (a whole copy in memory goes first).
    if (chunk !== undefined && chunk.pieces !== undefined && ctx.inMemory(chunk.hash) === undefined) {
      const partial = ctx.partials.get(chunk.hash)
      if (partial !== undefined && partial.size === chunk.size && partial.piecesDigest === chunk.pieces) { await this.sendPartial(bulk, i, partial); return }
    }
    const bytes = chunk === undefined ? undefined : await ctx.readChunk(chunk.hash)
    if (chunk === undefined || bytes === undefined || bytes.length !== chunk.size) {
      ctx.counters.inc('swarm.served_missing')
      // Announce it again if we gain it later (a chunk that was arriving here and broke off).
      this.announced.clear(i)
      await bulk.write(encodeReplyHeader(i, 0, true))
      return
    }
    const pieces = ctx.config.cutThrough === 0 || chunk.pieces === undefined ? [] : fresh ? pieceHashes(bytes) : [...(ctx.pieceHashes.get(chunk.hash, chunk.pieces) ?? [])]
    await ctx.upload.take(bytes.length)
    await bulk.write(encodeReplyHeader(i, bytes.length, false, false, pieces))
    await bulk.write(bytes)
    ctx.served(info.id, bytes.length)
  }

  /**
   * Sends a chunk that is still arriving, each verified stretch as it comes. If its reception
   * fails the reply cannot be finished: the error ends this link (the puller asks again elsewhere).
   */
  private async sendPartial (bulk: BulkChannel, i: number, partial: PartialChunk): Promise<void> {
    const { ctx, info } = this
    await bulk.write(encodeReplyHeader(i, partial.size, false, false, [...partial.pieceHashes]))
    let sent = 0
    while (sent < partial.size) {
      try {
        await partial.beyond(sent)
      } catch (err) {
        // Not this puller's doing: counted apart from what pullers send wrong.
        ctx.counters.inc('swarm.cut_through_aborted')
        throw new CutThroughAborted((err as Error).message)
      }
      const end = partial.servable
      await ctx.upload.take(end - sent)
      await bulk.write(partial.data.subarray(sent, end))
      sent = end
    }
    ctx.served(info.id, partial.size)
    ctx.counters.inc('swarm.served_cut_through')
  }
}

/** A reply passing a chunk on while it arrived could not be finished: the chunk's reception failed here. */
class CutThroughAborted extends Error {
  constructor (why: string) {
    super(`the chunk being passed on stopped arriving here: ${why}`)
    this.name = 'CutThroughAborted'
  }
}
