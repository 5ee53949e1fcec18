import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkStore, sha256 } from '@vmesh/store'
import { DurableQueue } from './durable-queue.js'
import type { SwarmContext } from './swarm-context.js'

describe('durable queue of verified chunks', () => {
  it('keeps chunks servable from memory until a flush makes them durable and visible', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'swarm-dq-'))
    try {
      const store = await ChunkStore.open({ dir })
      const pending = new Map<string, Uint8Array>()
      // At most 3 chunks may wait for the disk; a flush every 4 chunks.
      const q = new DurableQueue({ store, pending } as unknown as SwarmContext, 3 * 64 * 1024, 4)
      const chunks = Array.from({ length: 10 }, () => randomBytes(64 * 1024))
      let mostPending = 0
      for (const c of chunks) {
        await q.add(sha256(c), c)
        // Servable at once from memory, or already in the store.
        expect(pending.has(sha256(c)) || store.has(sha256(c))).toBe(true)
        mostPending = Math.max(mostPending, pending.size)
      }
      expect(mostPending).toBeLessThanOrEqual(4)
      expect(chunks.filter((c) => store.has(sha256(c))).length).toBeGreaterThanOrEqual(8)
      await q.flush()
      expect(pending.size).toBe(0)
      for (const c of chunks) expect(Buffer.from(await store.readVerified(sha256(c))).equals(c)).toBe(true)
      // Adding what the store holds is a no-op.
      await q.add(sha256(chunks[0] as Buffer), chunks[0] as Buffer)
      expect(pending.size).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('flushes when the bound comes before flushEvery chunks do (large chunks), instead of spinning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'swarm-dq-'))
    try {
      const store = await ChunkStore.open({ dir })
      const pending = new Map<string, Uint8Array>()
      // 2 chunks may wait, a flush every 32: 4 MiB chunks with the default 64 MiB and 32 did this.
      const q = new DurableQueue({ store, pending } as unknown as SwarmContext, 2 * 64 * 1024, 32)
      const chunks = Array.from({ length: 6 }, () => randomBytes(64 * 1024))
      let mostPending = 0
      for (const c of chunks) {
        await q.add(sha256(c), c)
        mostPending = Math.max(mostPending, pending.size)
      }
      expect(mostPending).toBeLessThanOrEqual(3)
      expect(chunks.filter((c) => store.has(sha256(c))).length).toBeGreaterThanOrEqual(4)
      await q.flush()
      expect(pending.size).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a quota failure surfaces to the caller', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'swarm-dq-'))
    try {
      const store = await ChunkStore.open({ dir, quotaBytes: 100 * 1024 })
      const q = new DurableQueue({ store, pending: new Map() } as unknown as SwarmContext, 8 * 1024 * 1024, 1)
      const a = randomBytes(64 * 1024)
      const b = randomBytes(64 * 1024)
      await q.add(sha256(a), a)
      await expect((async () => { await q.add(sha256(b), b); await q.flush() })()).rejects.toThrow(/quota/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
