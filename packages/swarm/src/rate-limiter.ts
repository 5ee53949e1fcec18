// A token bucket that caps a host's upload or download rate. The bucket may go into debt by one
// request (a 1 MiB chunk larger than the burst is allowed through, and the next caller waits the
// debt off), so callers never need to split their writes. The arithmetic is pure.

export interface BucketState {
  tokens: number
  atMs: number
}

/** Tokens after refilling at `rate` bytes/s up to `burst`, from state to now. */
export function refill (s: BucketState, nowMs: number, rate: number, burst: number): BucketState {
  const dt = Math.max(0, nowMs - s.atMs)
  return { tokens: Math.min(burst, s.tokens + dt * rate / 1000), atMs: Math.max(nowMs, s.atMs) }
}

/** How long until the bucket is out of debt (tokens ≥ 0). */
export function waitMsFor (tokens: number, rate: number): number {
  return tokens >= 0 ? 0 : Math.ceil(-tokens * 1000 / rate)
}

export class RateLimiter {
  private state: BucketState
  private chain: Promise<void> = Promise.resolve()

  /**
   * @param bytesPerS cap; 0 or Infinity means unlimited
   * @param burstBytes what may pass at once after idling (default: 100 ms worth, at least 256 KiB)
   */
  constructor (readonly bytesPerS: number, readonly burstBytes = Math.max(256 * 1024, bytesPerS / 10), private readonly now: () => number = Date.now) {
    this.state = { tokens: burstBytes, atMs: now() }
  }

  get unlimited (): boolean {
    return !(this.bytesPerS > 0 && Number.isFinite(this.bytesPerS))
  }

  /** Resolves when `bytes` may pass. Callers are served in order. */
  async take (bytes: number): Promise<void> {
    if (this.unlimited) return
    const turn = this.chain.then(async () => {
      this.state = refill(this.state, this.now(), this.bytesPerS, this.burstBytes)
      const wait = waitMsFor(this.state.tokens, this.bytesPerS)
      if (wait > 0) {
        await new Promise((resolve) => setTimeout(resolve, wait))
        this.state = refill(this.state, this.now(), this.bytesPerS, this.burstBytes)
      }
      this.state = { ...this.state, tokens: this.state.tokens - bytes }
    })
    this.chain = turn
    await turn
  }
}
