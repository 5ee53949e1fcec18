// The incarnation survives restarts: a restarted agent must come back with a higher incarnation
// than any claim others hold about its previous life, or its adverts would be ignored.
import { readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'

const FILE = 'incarnation'

export async function loadIncarnation (dataDir: string): Promise<number> {
  try {
    const n = Number((await readFile(join(dataDir, FILE), 'utf8')).trim())
    return Number.isSafeInteger(n) && n >= 0 ? n : 0
  } catch {
    return 0
  }
}

export async function saveIncarnation (dataDir: string, incarnation: number): Promise<void> {
  const path = join(dataDir, FILE)
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, `${incarnation}\n`, { flush: true })
  await rename(tmp, path)
}
