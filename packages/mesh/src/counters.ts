// Named counters of what was rejected or went wrong, shown by `vmesh stats`. Every handler of
// untrusted input counts what it rejects here instead of crashing or staying silent.
export class Counters {
  private readonly values = new Map<string, number>()

  inc (name: string, by = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + by)
  }

  get (name: string): number {
    return this.values.get(name) ?? 0
  }

  entries (): Array<[string, number]> {
    return [...this.values.entries()].sort(([a], [b]) => a.localeCompare(b))
  }
}
