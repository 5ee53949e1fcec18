// Follows a VM's serial log and time-stamps the guest's counter lines as they arrive. Used by the
// tests and the benchmark to see, from outside, how long the guest's workload stopped.
import { open } from 'node:fs/promises'

export interface CounterTick {
  value: number
  /** Host time (performance.now()) when the line was seen. */
  atMs: number
}

const COUNTER_RE = /vmesh-counter (\d+)/g

export class CounterWatch {
  readonly ticks: CounterTick[] = []
  private offset = 0
  private timer: NodeJS.Timeout | undefined
  private partial = ''

  constructor(private readonly path: string, private readonly pollMs = 5) {}

  start(): this {
    const poll = async (): Promise<void> => {
      await this.readNew()
      if (this.timer) this.timer = setTimeout(() => void poll(), this.pollMs)
    }
    this.timer = setTimeout(() => void poll(), 0)
    return this
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }

  private async readNew(): Promise<void> {
    const fh = await open(this.path, 'r').catch(() => undefined)
    if (!fh) return
    try {
      const buf = Buffer.alloc(64 * 1024)
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset)
        if (bytesRead === 0) break
        this.offset += bytesRead
        const text = this.partial + buf.subarray(0, bytesRead).toString('utf8')
        const nl = text.lastIndexOf('\n')
        this.partial = text.slice(nl + 1)
        const now = performance.now()
        for (const m of text.slice(0, nl + 1).matchAll(COUNTER_RE)) this.ticks.push({ value: Number(m[1]), atMs: now })
      }
    } finally {
      await fh.close()
    }
  }

  /** Largest gap between consecutive ticks seen between two host times. */
  maxGapMs(fromMs: number, toMs: number): number {
    return maxTickGap(this.ticks.filter((t) => t.atMs >= fromMs && t.atMs <= toMs))
  }
}

/** Pure: the longest interval between consecutive ticks. */
export function maxTickGap(ticks: CounterTick[]): number {
  let max = 0
  for (let i = 1; i < ticks.length; i++) max = Math.max(max, ticks[i]!.atMs - ticks[i - 1]!.atMs)
  return max
}

/** All counter values printed in a console log, in order. */
export function counterValues(consoleText: string): number[] {
  return [...consoleText.matchAll(COUNTER_RE)].map((m) => Number(m[1]))
}
