// Runs a flush at most once per interval. Have-updates use it: every chunk a target gains is news
// for each of its links, and sent one by one that is one libp2p message (Yamux, Noise, pnet, a
// protobuf) per chunk per link, N² a chunk over a swarm of N. The first request after a quiet
// spell flushes at once (on the next turn of the event loop, so one tick's gains share a
// message): when few chunks move, at the end of a transfer, nothing waits.

export class FlushThrottle {
  private timer: ReturnType<typeof setTimeout> | undefined
  private immediate: ReturnType<typeof setImmediate> | undefined
  private lastFlushAt = -Infinity
  private stopped = false

  constructor (
    private readonly intervalMs: number,
    private readonly flush: () => void,
    private readonly now: () => number = Date.now
  ) {}

  /** Asks for a flush: now if the last was at least an interval ago, else an interval after it. */
  request (): void {
    if (this.stopped || this.timer !== undefined || this.immediate !== undefined) return
    const waitMs = this.lastFlushAt + this.intervalMs - this.now()
    if (waitMs <= 0) this.immediate = setImmediate(this.run)
    else this.timer = setTimeout(this.run, waitMs)
  }

  /** No flush after this one; a pending one is dropped. */
  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    clearImmediate(this.immediate)
    this.timer = undefined
    this.immediate = undefined
  }

  private readonly run = (): void => {
    this.timer = undefined
    this.immediate = undefined
    this.lastFlushAt = this.now()
    this.flush()
  }
}
