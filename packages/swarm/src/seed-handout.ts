// A seed's hand-out state for one push (manifest + session): which chunks each live puller holds,
// and which chunks are on their way to whom. Asked for a "fresh" chunk, the seed sends the lowest
// chunk that the asker lacks, that no live puller holds, and that is not already on its way to a
// live puller (looking first among `first`, the chunks the pullers need before the rest).
// Consequences, by construction:
//   - the seed sends each chunk once while its receiver lives (egress ≈ 1x for any N);
//   - a target that downloads faster asks more often and gets more chunks to relay (no static
//     stripes to fall behind on);
//   - when a puller dies, what it held and never passed on is no longer "held by a live puller",
//     so it is handed out again, to the survivors only, and only once;
//   - end game: once every chunk is out, a puller that asks while the seed has nothing new gets
//     a chunk it lacks that the fewest pullers hold, within a small budget of duplicates
//     (endgameChunks): the seed's idle upload shortens the tail where one relay would otherwise
//     send the last chunks to every other target alone.
// Pure bookkeeping (no I/O) so the tests drive it directly.
import { Bitfield } from './bitfield.js'

/** A chunk handed out and not confirmed by a have-update within this time may be handed out again. */
export const HANDOUT_TIMEOUT_MS = 30_000

interface PullerState {
  have: Bitfield
  /** False once its link closed uncleanly: what it holds no longer counts. */
  live: boolean
}

export class SeedHandout {
  private readonly pullers = new Map<string, PullerState>()
  /** How many live pullers hold each chunk. */
  private readonly held: Uint16Array
  /** Chunk -> (puller it was handed to, when). */
  private readonly onItsWay = new Map<number, { peer: string, atMs: number }>()
  /**
   * Where this seed starts looking. Seeds do not share hand-out state, so several seeds of one
   * push start at different places (from their peer ids): each hands out its own region first,
   * and a chunk goes out twice only where two regions meet while it is in flight.
   */
  readonly offset: number
  /** Chunks handed out in all (for tests and stats), and end-game duplicates among them. */
  handedOut = 0
  duplicates = 0

  /**
   * @param endgameChunks duplicates the end game may send in all (0: none)
   * @param startFraction where in [0, 1) of the chunk list this seed starts handing out
   * @param first chunks to hand out before any other (indices below count)
   * @param available how many chunks (from index 0) exist yet: a live push's table grows
   */
  constructor (readonly count: number, private readonly now: () => number = Date.now, readonly endgameChunks = 0, startFraction = 0,
    private readonly first: readonly number[] = [], private readonly available: () => number = () => count) {
    this.held = new Uint16Array(count)
    this.offset = count === 0 ? 0 : Math.min(count - 1, Math.floor(Math.max(0, Math.min(1, startFraction)) * count))
  }

  get livePullers (): number {
    let n = 0
    for (const p of this.pullers.values()) if (p.live) n++
    return n
  }

  /** A puller (re)connects with its have-map. */
  join (peer: string, have: Bitfield): void {
    this.drop(peer)
    const copy = Bitfield.decode(have.bytes, this.count)
    for (const i of copy.indices()) this.held[i] = (this.held[i] as number) + 1
    this.pullers.set(peer, { have: copy, live: true })
    for (const i of copy.indices()) this.onItsWay.delete(i)
  }

  /** A puller reports chunks it now holds. */
  gained (peer: string, indices: Iterable<number>): void {
    const p = this.pullers.get(peer)
    if (p === undefined || !p.live) return
    for (const i of indices) {
      if (p.have.set(i)) this.held[i] = (this.held[i] as number) + 1
      const w = this.onItsWay.get(i)
      if (w !== undefined && w.peer === peer) this.onItsWay.delete(i)
    }
  }

  /**
   * The puller's link closed. Clean (it finished and ended the link): it keeps serving what it
   * holds, so its chunks still count. Unclean (died, or the link broke): they no longer do, and
   * what was on its way to it may be handed out again.
   */
  leave (peer: string, clean: boolean): void {
    if (clean) {
      for (const [i, w] of this.onItsWay) if (w.peer === peer) this.onItsWay.delete(i)
      return
    }
    this.drop(peer)
  }

  /** The next chunk to send `peer`, marked as on its way; undefined when there is none now. */
  next (peer: string): number | undefined {
    const p = this.pullers.get(peer)
    if (p === undefined || !p.live) return undefined
    const now = this.now()
    const known = this.available()
    const fresh = (i: number): boolean => {
      if (i >= known || (this.held[i] as number) > 0 || p.have.has(i)) return false
      const w = this.onItsWay.get(i)
      return w === undefined || now - w.atMs >= HANDOUT_TIMEOUT_MS
    }
    let pick = this.first.find(fresh)
    for (let k = 0; pick === undefined && k < this.count; k++) {
      const i = (this.offset + k) % this.count
      if (fresh(i)) pick = i
    }
    if (pick === undefined) return this.endgame(p, peer, now)
    this.onItsWay.set(pick, { peer, atMs: now })
    this.handedOut++
    return pick
  }

  /** Nothing new: the rarest chunk the asker lacks (and is not already being sent), if budget remains. */
  private endgame (p: PullerState, peer: string, now: number): number | undefined {
    if (this.duplicates >= this.endgameChunks) return undefined
    let best: number | undefined
    let bestHeld = Infinity
    for (let i = 0; i < Math.min(this.count, this.available()); i++) {
      const held = this.held[i] as number
      if (held === 0 || held >= bestHeld || p.have.has(i)) continue
      const w = this.onItsWay.get(i)
      if (w !== undefined && w.peer === peer) continue
      best = i
      bestHeld = held
    }
    if (best === undefined) return undefined
    this.onItsWay.set(best, { peer, atMs: now })
    this.handedOut++
    this.duplicates++
    return best
  }

  private drop (peer: string): void {
    const old = this.pullers.get(peer)
    if (old === undefined) return
    if (old.live) for (const i of old.have.indices()) this.held[i] = (this.held[i] as number) - 1
    this.pullers.delete(peer)
    for (const [i, w] of this.onItsWay) if (w.peer === peer) this.onItsWay.delete(i)
  }
}
