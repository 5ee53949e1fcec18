// Lifeguard suspicion: a suspected member is declared dead when its timer runs out, and every
// independent confirmation (another member suspecting it too) shortens the timer, from max toward
// min, on a log scale. A lone suspicion from a member with a bad link waits long enough for the
// suspect to refute it; a host that everyone lost is declared dead quickly.

/** Minimum suspicion time for a cluster of `members`: grows with log10(n) as gossip takes longer. */
export function suspicionMinMs (baseMs: number, members: number): number {
  return baseMs * Math.max(1, Math.log10(Math.max(1, members)))
}

/**
 * Total suspicion time after `confirmations` independent confirmations, when `expected` are
 * expected: max at 0, min once `expected` have arrived, log-interpolated in between.
 */
export function suspicionTimeoutMs (confirmations: number, expected: number, minMs: number, maxMs: number): number {
  if (expected <= 0 || confirmations >= expected) return minMs
  const fraction = Math.log(confirmations + 1) / Math.log(expected + 1)
  return Math.max(minMs, Math.floor(maxMs - fraction * (maxMs - minMs)))
}

/** One member's suspicion: who confirmed it, and when it fires. Timers are the only I/O. */
export class Suspicion {
  /** Members that independently suspected the subject; the first suspector counts too. */
  private readonly confirmers = new Set<string>()
  /** When the suspicion started; the timeout is measured from here, not from the last confirmation. */
  private readonly startedAt: number
  private timer: NodeJS.Timeout | undefined

  constructor (
    readonly incarnation: number,
    firstSuspector: string,
    private readonly expected: number,
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly onTimeout: () => void,
    private readonly now: () => number = Date.now
  ) {
    this.startedAt = now()
    this.confirmers.add(firstSuspector)
    this.schedule()
  }

  /** Records a confirmation; returns true if it was new (and so shortened the timer). */
  confirm (suspector: string): boolean {
    if (this.timer === undefined || this.confirmers.has(suspector)) return false
    this.confirmers.add(suspector)
    this.schedule()
    return true
  }

  get confirmations (): number {
    // The first suspector started the suspicion; confirmations are the others.
    return this.confirmers.size - 1
  }

  cancel (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    const total = suspicionTimeoutMs(this.confirmations, this.expected, this.minMs, this.maxMs)
    const remaining = Math.max(0, total - (this.now() - this.startedAt))
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.onTimeout()
    }, remaining)
    this.timer.unref?.()
  }
}
