// Chunks that were verified against their hash moments ago (received and put, or read verified),
// kept in memory so a relay serves them to its N-1 peers without re-reading and re-hashing each
// time. Only verified bytes ever enter; least recently used leave first.

export class VerifiedChunkCache {
  private readonly entries = new Map<string, Uint8Array>()
  private bytes = 0

  constructor (readonly maxBytes: number) {}

  get (hash: string): Uint8Array | undefined {
    const v = this.entries.get(hash)
    if (v !== undefined) {
      this.entries.delete(hash)
      this.entries.set(hash, v)
    }
    return v
  }

  /** Stores bytes that the caller has just verified hash to `hash`. */
  addVerified (hash: string, data: Uint8Array): void {
    if (data.length > this.maxBytes) return
    const old = this.entries.get(hash)
    if (old !== undefined) { this.entries.delete(hash); this.bytes -= old.length }
    this.entries.set(hash, data)
    this.bytes += data.length
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break
      this.entries.delete(k)
      this.bytes -= v.length
    }
  }

  get size (): number {
    return this.bytes
  }
}
