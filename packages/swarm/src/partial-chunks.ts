// Chunks that are arriving, served onward while they arrive (cut-through): a relay that is
// receiving a chunk can start sending it to its other peers at once instead of after the whole
// chunk is in, so a hop costs a piece's time rather than a chunk's. Only the verified prefix is
// ever handed out: bytes become servable a whole piece at a time, once the piece's hash matched.
// A chunk that fails (its link dropped, a piece did not verify) fails every reader waiting on it.

/** Checks piece k (its bytes); true if it may be served. */
export type PieceCheck = (k: number, bytes: Buffer) => boolean

export class PartialChunk {
  /** The chunk's bytes; only data[0, servable) is verified, the rest is being written. */
  readonly data: Buffer
  /** Bytes copied in so far. */
  private written = 0
  /** Verified bytes from the start: what readers may send. */
  servable = 0
  failure: Error | undefined
  private waiters: Array<() => void> = []

  constructor (size: number, readonly pieceBytes: number, private readonly check: PieceCheck) {
    if (!(size > 0) || !(pieceBytes > 0)) throw new RangeError(`a partial chunk needs a size and piece size > 0, got ${size}, ${pieceBytes}`)
    this.data = Buffer.allocUnsafe(size)
  }

  get size (): number {
    return this.data.length
  }

  /** All bytes are in (verified or not): the whole chunk is then checked by its receiver. */
  get filled (): boolean {
    return this.written === this.data.length
  }

  /**
   * Copies the next bytes in; each piece that is now whole is checked and, if it matches, made
   * servable. A piece that does not match fails the chunk for its readers (nothing more becomes
   * servable) and append returns false, once; the bytes are still gathered, for the receiver to
   * check the whole chunk by its hash.
   */
  append (bytes: Buffer): boolean {
    if (this.written + bytes.length > this.data.length) throw new RangeError(`${bytes.length} more bytes overflow a chunk of ${this.data.length}`)
    bytes.copy(this.data, this.written)
    this.written += bytes.length
    let grew = false
    while (this.failure === undefined && this.servable < this.written) {
      const end = Math.min(this.servable + this.pieceBytes, this.data.length)
      if (end > this.written) break
      const k = this.servable / this.pieceBytes
      if (!this.check(k, this.data.subarray(this.servable, end))) {
        this.fail(new Error(`piece ${k} of the chunk does not match its hash`))
        return false
      }
      this.servable = end
      grew = true
    }
    if (grew) this.wake()
    return true
  }

  fail (err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    this.wake()
  }

  /** Resolves once more than `have` bytes are servable; rejects if the chunk failed. */
  async beyond (have: number): Promise<void> {
    while (this.servable <= have) {
      if (this.failure !== undefined) throw this.failure
      if (have >= this.data.length) return
      await new Promise<void>((resolve) => this.waiters.push(resolve))
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
