// Lifeguard's local health awareness: when this agent is the slow one (its probes fail but others
// reach the target, or it had to refute a suspicion of itself), it waits longer before suspecting
// anybody. This is what keeps a host with both cores busy from accusing healthy peers.
export class Awareness {
  private score = 0

  constructor (private readonly max: number = 8) {}

  /** Positive delta when we look unhealthy, negative when probes succeed. */
  apply (delta: number): void {
    this.score = Math.min(this.max, Math.max(0, this.score + delta))
  }

  get health (): number {
    return this.score
  }

  /** Scales a timeout by (1 + score). */
  scale (ms: number): number {
    return ms * (1 + this.score)
  }
}
