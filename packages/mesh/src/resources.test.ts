import { describe, it, expect } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseLoadavg, parseMeminfo, parseDiskstats, ioUtilisation, ResourceSampler } from './resources.js'

describe('resource parsers', () => {
  it('reads the 1-minute load', () => {
    expect(parseLoadavg('0.52 0.58 0.59 1/467 12345\n')).toBe(0.52)
    expect(parseLoadavg('garbage')).toBe(0)
  })

  it('reads MemTotal and MemAvailable in MiB', () => {
    const m = parseMeminfo('MemTotal:       24684544 kB\nMemFree:        1000 kB\nMemAvailable:   23592960 kB\n')
    expect(m).toEqual({ totalMiB: 24106, availableMiB: 23040 })
  })

  it('reads time spent doing I/O per device', () => {
    const d = parseDiskstats(' 253       0 vda 100 0 200 30 40 0 50 60 0 1234 90 0 0 0 0\n   7       0 loop0 1 0 1 0 0 0 0 0 0 5 0\n')
    expect(d.get('253:0')).toEqual({ name: 'vda', ioMs: 1234 })
    expect(d.get('7:0')?.ioMs).toBe(5)
  })

  it('computes utilisation as busy time over wall time, clamped', () => {
    expect(ioUtilisation(1000, 1500, 1000)).toBe(0.5)
    expect(ioUtilisation(1000, 5000, 1000)).toBe(1)
    expect(ioUtilisation(1000, 900, 1000)).toBe(0)
    expect(ioUtilisation(1000, 1500, 0)).toBe(0)
  })

  it('samples this host with plausible values', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-res-'))
    try {
      const s = new ResourceSampler(dir, () => 'tcg')
      const r = await s.sample()
      expect(r.cpuCores).toBeGreaterThan(0)
      expect(r.memTotalMib).toBeGreaterThan(0)
      expect(r.memFreeMib).toBeLessThanOrEqual(r.memTotalMib as number)
      expect(r.diskFreeMib).toBeLessThanOrEqual(r.diskTotalMib as number)
      expect(r.accel).toBe('tcg')
    } finally {
      rmSync(dir, { recursive: true })
    }
  })
})
