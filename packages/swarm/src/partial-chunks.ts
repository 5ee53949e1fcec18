// Chunks that are arriving, served onward while they arrive (cut-through): a host that is
// receiving a chunk can start sending it to its peers at once instead of after the whole chunk is
// in, so a hop costs a piece's time rather than a chunk's. Only a checked prefix is ever handed
// out: bytes become servable a whole piece at a time, once the piece's hash matched. Pieces are
// checked when a reader wants them, so a chunk nobody asks for while it arrives costs no hashing
// beyond its receiver's check of the whole chunk. A chunk that fails (its link dropped, a piece
// did not match) fails every reader waiting on it.

/** Checks piece k (its bytes); true if it may be served. */
export type PieceCheck = (k: number, bytes: Buffer) => boolean

export class PartialChunk {
  /** The chunk's bytes; only data[0, servable) is checked, the rest may still be arriving. */
  readonly data: Buffer
  /** Bytes copied in so far. */
  private written = 0
  private checked = 0
  private failed: Error | undefined
  private waiters: Array<() => void> = []

  /**
   * `pieceHashes` (which hash to `piecesDigest`, the manifest's) are passed on in replies to this
   * host's pullers, so they may cut through too; `onBadPiece` hears of a piece that did not match,
   * once.
   */
  constructor (size: number, readonly pieceBytes: number, private readonly check: PieceCheck,
    readonly pieceHashes: readonly Uint8Array[] = [], readonly piecesDigest = '', private readonly onBadPiece?: (err: Error) => void) {
    if (!(size > 0) || !(pieceBytes > 0)) throw new RangeError(`a partial chunk needs a size and piece size > 0, got ${size}, ${pieceBytes}`)
    this.data = Buffer.allocUnsafe(size)
  }

  get size (): number {
    return this.data.length
  }

  /** Checked bytes from the start: what readers may send. */
  get servable (): number {
    return this.checked
  }

  get failure (): Error | undefined {
    return this.failed
  }

  /** Copies the next bytes in and wakes the readers waiting for them. */
  append (bytes: Buffer): void {
    if (this.written + bytes.length > this.data.length) throw new RangeError(`${bytes.length} more bytes overflow a chunk of ${this.data.length}`)
    bytes.copy(this.data, this.written)
    this.written += bytes.length
    if (this.waiters.length > 0) this.wake()
  }

  fail (err: Error): void {
    if (this.failed !== undefined) return
    this.failed = err
    this.wake()
  }

  /**
   * Resolves once more than `have` bytes are servable (checking the pieces in by then); rejects
   * if the chunk failed, a piece that does not match included.
   */
  async beyond (have: number): Promise<void> {
    for (;;) {
      this.advance()
      if (this.servable > have || have >= this.data.length) return
      if (this.failure !== undefined) throw this.failure
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
  }

  /** Checks each whole piece written past the servable prefix; a mismatch fails the chunk. */
  private advance (): void {
    while (this.failed === undefined && this.checked < this.written) {
      const end = Math.min(this.checked + this.pieceBytes, this.data.length)
      if (end > this.written) return
      const k = this.checked / this.pieceBytes
      if (!this.check(k, this.data.subarray(this.checked, end))) {
        const err = new Error(`piece ${k} of the chunk does not match its hash`)
        this.fail(err)
        this.onBadPiece?.(err)
        return
      }
      this.checked = end
    }
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** The chunks this agent is receiving, by hash: at most one reception of a chunk is served from. */
export class PartialChunks {
  private readonly byHash = new Map<string, PartialChunk>()

  get (hash: string): PartialChunk | undefined {
    const p = this.byHash.get(hash)
    return p?.failure === undefined ? p : undefined
  }

  has (hash: string): boolean {
    return this.get(hash) !== undefined
  }

  /** Registers a reception, unless one of this chunk is already registered. */
  begin (hash: string, p: PartialChunk): boolean {
    if (this.has(hash)) return false
    this.byHash.set(hash, p)
    return true
  }

  /** The reception ended (complete and in the store's queue, or failed). */
  end (hash: string, p: PartialChunk): void {
    if (this.byHash.get(hash) === p) this.byHash.delete(hash)
  }

  get size (): number {
    return this.byHash.size
  }
}

/**
 * Piece hashes of chunks that arrived with them (checked against their manifest's digest), kept
 * after the chunk is whole so this host's replies can give them too. Bounded: oldest out first.
 */
export class PieceHashCache {
  private readonly byHash = new Map<string, { digest: string, hashes: readonly Uint8Array[] }>()

  constructor (readonly maxEntries: number) {}

  add (hash: string, digest: string, hashes: readonly Uint8Array[]): void {
    if (hashes.length === 0) return
    this.byHash.delete(hash)
    this.byHash.set(hash, { digest, hashes })
    if (this.byHash.size > this.maxEntries) {
      const oldest = this.byHash.keys().next().value
      if (oldest !== undefined) this.byHash.delete(oldest)
    }
  }

  /** The piece hashes of a chunk, if they hash to `digest` (the pieces digest the asker's manifest gives). */
  get (hash: string, digest: string): readonly Uint8Array[] | undefined {
    const e = this.byHash.get(hash)
    return e?.digest === digest ? e.hashes : undefined
  }
}
