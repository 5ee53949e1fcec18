// Have-updates for one peer, sent in as few frames as their latency allows.
//
// Every have frame costs both hosts a pass through yamux, Noise and the private-network cipher,
// and at N=8 each host announces every chunk to 7 pullers and its seeds: about 8 frames a chunk,
// 16 000 a push of 256 chunks. Most of them only name a second or later copy of a chunk
// (pullers already fetch it from the host that announced it first), so those wait up to
// `delayMs` to share a frame; an urgent update (this host holds the swarm's first copy: its
// peers must hear of it at once to fetch it from here) goes out on the next turn of the event
// loop, with whatever else is pending.
export class HaveBatch {
  private pending: number[] = []
  private timer: NodeJS.Timeout | undefined
  private immediate: NodeJS.Immediate | undefined
  private sending = false
  private stopped = false

  constructor (
    private readonly send: (indices: number[]) => Promise<void>,
    private readonly delayMs: number,
    private readonly maxPerFrame: number,
    private readonly onError: (err: Error) => void = () => {}
  ) {}

  add (index: number, urgent: boolean): void {
    if (this.stopped) return
    this.pending.push(index)
    if (urgent || this.delayMs <= 0) {
      this.immediate ??= setImmediate(() => { this.immediate = undefined; void this.flush() })
    } else if (this.timer === undefined && this.immediate === undefined) {
      this.timer = setTimeout(() => { this.timer = undefined; void this.flush() }, this.delayMs)
    }
  }

  /** Drops what is pending; later adds do nothing. */
  stop (): void {
    this.stopped = true
    this.pending = []
    clearTimeout(this.timer)
    if (this.immediate !== undefined) clearImmediate(this.immediate)
    this.timer = undefined
    this.immediate = undefined
  }

  private async flush (): Promise<void> {
    // A send in progress picks up what was added meanwhile.
    if (this.sending) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.sending = true
    try {
      while (this.pending.length > 0 && !this.stopped) await this.send(this.pending.splice(0, this.maxPerFrame))
    } catch (err) {
      this.stop()
      this.onError(err as Error)
    } finally {
      this.sending = false
    }
  }
}
