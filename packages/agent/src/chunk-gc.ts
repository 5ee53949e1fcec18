// The agent's chunk garbage collector: runs the store's gc() at start-up, every GC_INTERVAL_MS,
// and when asked (after `snapshot rm`), one pass at a time. Safe beside transfers and imports by
// the store's own rules (store/src/gc.ts): chunks of saved manifests (images in the catalogue,
// snapshots, manifests a swarm target saves before its first chunk arrives) are referenced, and
// chunks of imports whose manifest is not saved yet are held (ChunkStore.hold).
import { gc } from '@vmesh/store'
import type { ChunkStore, GcResult, ManifestStore } from '@vmesh/store'
import type { Counters } from '@vmesh/mesh'
import type { Logger } from './logger.js'

/**
 * Period of the background pass. Garbage comes from deleted manifests (collected at once by
 * `snapshot rm`) and transfers cut short; ten minutes bounds what those leave lying around while
 * a pass (a walk of the in-memory index and one unlink per dead chunk) stays negligible.
 */
export const GC_INTERVAL_MS = 10 * 60_000

export class ChunkCollector {
  /** The pass running or queued last; the next one starts after it. */
  private tail: Promise<unknown> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined

  constructor (
    private readonly store: ChunkStore,
    private readonly manifests: ManifestStore,
    private readonly log: Logger,
    private readonly counters: Counters,
    private readonly intervalMs = GC_INTERVAL_MS
  ) {}

  /** One pass now, then one every interval; failures are logged and counted, never thrown. */
  start (): void {
    const background = (why: string): void => { this.run(why).catch(() => {}) }
    background('start-up')
    this.timer = setInterval(() => { background('periodic') }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Runs a pass after any pass in progress; resolves with what it deleted. */
  async run (why: string): Promise<GcResult> {
    const pass = this.tail.catch(() => {}).then(async () => await gc(this.store, this.manifests))
    this.tail = pass
    try {
      const r = await pass
      this.counters.inc('gc.runs')
      this.counters.inc('gc.deleted_chunks', r.deletedChunks)
      this.counters.inc('gc.deleted_bytes', r.deletedBytes)
      const level = r.deletedChunks > 0 ? 'info' : 'debug'
      this.log.log(level, `chunk gc (${why}): ${r.deletedChunks} chunk(s), ${r.deletedBytes} bytes deleted; ${r.referencedChunks} referenced by ${r.manifests} manifest(s), ${r.keptUnreferenced} unreferenced kept (held by transfers in progress)`)
      return r
    } catch (err) {
      this.counters.inc('gc.failed')
      this.log.warn(`chunk gc (${why}) failed: ${(err as Error).message}`)
      throw err
    }
  }
}
