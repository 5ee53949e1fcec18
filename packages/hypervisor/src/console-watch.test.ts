import { describe, expect, it } from 'vitest'
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CounterWatch, counterValues, maxTickGap } from './console-watch.js'

describe('counter parsing', () => {
  it('finds counter values amid kernel noise and measures the longest gap', () => {
    expect(counterValues('[ 1.0] boot\nvmesh-counter 7\nx vmesh-counter 8\n')).toEqual([7, 8])
    expect(maxTickGap([{ value: 1, atMs: 0 }, { value: 2, atMs: 200 }, { value: 3, atMs: 650 }, { value: 4, atMs: 850 }])).toBe(450)
    expect(maxTickGap([])).toBe(0)
  })

  it('follows a growing log, holding back a partial last line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-cw-'))
    const log = join(dir, 'console.log')
    writeFileSync(log, 'vmesh-counter 1\nvmesh-coun')
    const w = new CounterWatch(log, 2).start()
    try {
      await new Promise((r) => setTimeout(r, 30))
      expect(w.ticks.map((t) => t.value)).toEqual([1])
      appendFileSync(log, 'ter 2\nvmesh-counter 3\n')
      await new Promise((r) => setTimeout(r, 30))
      expect(w.ticks.map((t) => t.value)).toEqual([1, 2, 3])
    } finally {
      w.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
