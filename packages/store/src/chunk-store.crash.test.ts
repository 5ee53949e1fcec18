import { describe, it, expect, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ChunkStore } from './chunk-store.js'

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = join(here, '..', '..', '..')
const childScript = join(here, '..', 'test', 'crash-child.ts')

const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

/** Run the writer child until it reported `afterChunks` durable chunks plus a random delay, then SIGKILL it by PID. */
async function runAndKill (dir: string, afterChunks: number, extraDelayMs: number): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, dir], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
  const durable: string[] = []
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  let buf = ''
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)))
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop() ?? ''
      for (const l of lines) if (l.startsWith('durable ')) durable.push(l.slice(8))
      if (durable.length >= afterChunks) resolve()
    })
    child.on('exit', () => reject(new Error(`crash child exited early: ${stderr}`)))
  })
  await new Promise((resolve) => setTimeout(resolve, extraDelayMs))
  process.kill(child.pid as number, 'SIGKILL')
  expect(await exited).toBe('SIGKILL')
  return durable
}

/** Every file at a chunk's final name, checked straight from disk (not through the store). */
async function visibleChunks (dir: string): Promise<Array<{ name: string, actual: string }>> {
  const out: Array<{ name: string, actual: string }> = []
  const chunks = join(dir, 'chunks')
  for (const p of await readdir(chunks)) {
    if (!/^[0-9a-f]{2}$/.test(p)) continue
    for (const n of await readdir(join(chunks, p))) {
      const bytes = await readFile(join(chunks, p, n))
      out.push({ name: p + n, actual: createHash('sha256').update(bytes).digest('hex') })
    }
  }
  return out
}

describe('chunk store crash safety', () => {
  it('a writer killed with SIGKILL mid-write leaves no visible partial chunk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmesh-store-crash-'))
    dirs.push(dir)
    const reported = new Set<string>()
    // several kills at different moments, reusing the same store (as an agent restart would)
    for (const [after, delay] of [[4, 0], [12, 7], [20, 23], [8, 41]] as const) {
      for (const h of await runAndKill(dir, after, delay)) reported.add(h)
      const visible = await visibleChunks(dir)
      for (const v of visible) expect(v.actual, `chunk file ${v.name} is incomplete or corrupt`).toBe(v.name)
    }
    const before = await visibleChunks(dir)
    expect(before.length).toBeGreaterThanOrEqual(reported.size)
    const store = await ChunkStore.open({ dir })
    // leftovers of the killed writes were temp files only, and open() removes them
    expect(await readdir(join(dir, 'chunks', 'tmp'))).toEqual([])
    // everything reported durable is there and reads back verified
    for (const h of reported) {
      expect(store.has(h)).toBe(true)
      expect(createHash('sha256').update(await store.readVerified(h)).digest('hex')).toBe(h)
    }
    expect(store.stats().chunks).toBe(before.length)
    expect(store.stats().corruptDiscarded).toBe(0)
  }, 120_000)
})
