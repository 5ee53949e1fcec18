// Child process for chunk-store.crash.test.ts: writes chunks forever (single puts and import-style
// batches) into the store at argv[2], printing each hash once it is durable, until it is killed.
import { randomBytes, createHash } from 'node:crypto'
import { ChunkStore } from '../src/chunk-store.js'

const store = await ChunkStore.open({ dir: process.argv[2] as string, writeBatch: 8 })
for (;;) {
  const w = store.writer()
  const batch: string[] = []
  for (let i = 0; i < 8; i++) {
    const bytes = randomBytes(256 * 1024 + Math.floor(Math.random() * 768 * 1024))
    const hash = createHash('sha256').update(bytes).digest('hex')
    if (i % 2 === 0) {
      await store.put(hash, bytes)
      process.stdout.write(`durable ${hash}\n`)
    } else {
      await w.add(hash, bytes)
      batch.push(hash)
    }
  }
  await w.flush()
  for (const h of batch) process.stdout.write(`durable ${h}\n`)
}
