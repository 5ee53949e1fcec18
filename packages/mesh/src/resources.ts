// Samples this host's resources from /proc and the filesystem: CPU cores and load, memory,
// free disk under the data dir, and disk I/O utilisation of the device holding it.
import { readFile, stat, statfs } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import type { vmesh } from '@vmesh/wire'

export type Resources = vmesh.v1.Resources.$Properties

export function parseLoadavg (text: string): number {
  const first = Number(text.split(/\s+/)[0])
  return Number.isFinite(first) ? first : 0
}

/** Returns MemTotal and MemAvailable in MiB. */
export function parseMeminfo (text: string): { totalMiB: number, availableMiB: number } {
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(text)
    return m === null ? 0 : Number(m[1])
  }
  return { totalMiB: Math.floor(kib('MemTotal') / 1024), availableMiB: Math.floor(kib('MemAvailable') / 1024) }
}

/** Milliseconds spent doing I/O, per "major:minor", from /proc/diskstats (field 13). */
export function parseDiskstats (text: string): Map<string, { name: string, ioMs: number }> {
  const out = new Map<string, { name: string, ioMs: number }>()
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f.length < 13) continue
    const ioMs = Number(f[12])
    if (!Number.isFinite(ioMs)) continue
    out.set(`${f[0]}:${f[1]}`, { name: f[2] as string, ioMs })
  }
  return out
}

/** Share of wall time a device was busy between two samples, clamped to 0..1. */
export function ioUtilisation (prevIoMs: number, nextIoMs: number, elapsedMs: number): number {
  if (elapsedMs <= 0 || nextIoMs < prevIoMs) return 0
  return Math.min(1, (nextIoMs - prevIoMs) / elapsedMs)
}

export class ResourceSampler {
  private prevIo: { at: number, ioMs: number } | undefined
  private deviceKey: string | undefined

  constructor (private readonly dataDir: string, private readonly accel: () => string) {}

  async sample (): Promise<Resources> {
    const [loadavg, meminfo, fsStats] = await Promise.all([
      readFile('/proc/loadavg', 'utf8').catch(() => '0'),
      readFile('/proc/meminfo', 'utf8').catch(() => ''),
      statfs(this.dataDir).catch(() => undefined)
    ])
    const mem = parseMeminfo(meminfo)
    const mib = (blocks: number, size: number): number => Math.floor((blocks * size) / (1024 * 1024))
    return {
      cpuCores: availableParallelism(),
      load1: parseLoadavg(loadavg),
      memTotalMib: mem.totalMiB,
      memFreeMib: Math.min(mem.availableMiB, mem.totalMiB),
      diskTotalMib: fsStats === undefined ? 0 : mib(fsStats.blocks, fsStats.bsize),
      diskFreeMib: fsStats === undefined ? 0 : Math.min(mib(fsStats.bavail, fsStats.bsize), mib(fsStats.blocks, fsStats.bsize)),
      ioUtil: await this.sampleIo(),
      accel: this.accel()
    }
  }

  /**
   * The data dir's device by major:minor; if it is not a disk listed in /proc/diskstats (an
   * overlay or tmpfs), the busiest listed disk stands in, since VM disks compete with it.
   */
  private async sampleIo (): Promise<number> {
    const text = await readFile('/proc/diskstats', 'utf8').catch(() => '')
    const disks = parseDiskstats(text)
    if (this.deviceKey === undefined) {
      const st = await stat(this.dataDir).catch(() => undefined)
      if (st !== undefined) {
        const key = `${Math.floor(st.dev / 256) & 0xfff}:${(st.dev & 0xff) | ((st.dev >> 12) & 0xfff00)}`
        this.deviceKey = disks.has(key) ? key : ''
      }
    }
    let ioMs = 0
    if (this.deviceKey !== undefined && this.deviceKey !== '') ioMs = disks.get(this.deviceKey)?.ioMs ?? 0
    else for (const d of disks.values()) if (!/^(loop|ram|dm-)/.test(d.name)) ioMs = Math.max(ioMs, d.ioMs)
    const now = Date.now()
    const prev = this.prevIo
    this.prevIo = { at: now, ioMs }
    return prev === undefined ? 0 : ioUtilisation(prev.ioMs, ioMs, now - prev.at)
  }
}
