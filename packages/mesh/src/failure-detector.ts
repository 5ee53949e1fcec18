// SWIM failure detection: each interval probe one member (round-robin over a shuffled list); if a
// direct ping fails, ask k other members to ping it (ping-req); if none reaches it, suspect it.
import type { Awareness } from './awareness.js'
import type { MeshConfig } from './config.js'

export interface ProbeTransport {
  /** Members that may be probed: alive or suspect, never ourselves. */
  candidates: () => string[]
  /**
   * Pings a member directly. "refused" means its host answered that nothing listens there (a
   * TCP reset): the agent is gone, and asking others to try again would only add load.
   */
  ping: (id: string, timeoutMs: number) => Promise<'ok' | 'refused' | 'timeout'>
  /** Asks `helper` to ping `target`; true on an ack, false on a nack, an error or a timeout. */
  pingVia: (helper: string, target: string, timeoutMs: number) => Promise<boolean>
  suspect: (id: string) => void
}

export class FailureDetector {
  private queue: string[] = []
  private timer: NodeJS.Timeout | undefined
  private readonly inFlight = new Set<string>()
  /** Probes that found the target unreachable and raised a suspicion, for stats. */
  failedProbes = 0

  constructor (
    private readonly config: MeshConfig,
    private readonly transport: ProbeTransport,
    private readonly awareness: Awareness
  ) {}

  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => { this.tick() }, this.config.probeIntervalMs)
    this.timer.unref?.()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Probes a member now, outside the round (e.g. its connection just dropped). */
  probeNow (id: string): void {
    void this.probe(id)
  }

  private tick (): void {
    const target = this.nextTarget()
    if (target !== undefined) void this.probe(target)
  }

  private nextTarget (): string | undefined {
    const live = new Set(this.transport.candidates())
    while (this.queue.length > 0) {
      const next = this.queue.shift() as string
      if (live.has(next)) return next
    }
    this.queue = shuffle([...live])
    return this.queue.shift()
  }

  private async probe (target: string): Promise<void> {
    if (this.inFlight.has(target)) return
    this.inFlight.add(target)
    try {
      const timeout = this.awareness.scale(this.config.probeTimeoutMs)
      const direct = await this.transport.ping(target, timeout)
      if (direct === 'ok') {
        this.awareness.apply(-1)
        return
      }
      const helpers = direct === 'refused' ? [] : this.helpersFor(target)
      if (helpers.length > 0) {
        const acks = await Promise.all(helpers.map(async (h) => await this.transport.pingVia(h, target, timeout)))
        if (acks.some((a) => a)) {
          // Others reach it and we did not: we are probably the slow one.
          this.awareness.apply(1)
          return
        }
      }
      this.failedProbes++
      this.transport.suspect(target)
    } finally {
      this.inFlight.delete(target)
    }
  }

  private helpersFor (target: string): string[] {
    return shuffle(this.transport.candidates().filter((id) => id !== target)).slice(0, this.config.indirectProbes)
  }
}

export function shuffle<T> (items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const tmp = items[i] as T
    items[i] = items[j] as T
    items[j] = tmp
  }
  return items
}
