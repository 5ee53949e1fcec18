// For benchmarks' --trace: every 500 ms (VMESH_TRACE_MS to change it), each lab host's upload and
// download rate in mbit/s, read from its interface counters, and how busy the machine's CPUs were
// (the lab's hosts share them: a phase at 100% is CPU-bound, not link-bound).
import { readFileSync } from 'node:fs'
import type { LabAgents } from './lab-agents.ts'

/** Busy and total jiffies of all CPUs together, from /proc/stat. */
function cpuTimes (): { busy: number, total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
  const total = fields.reduce((a, b) => a + b, 0)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  return { busy: total - idle, total }
}

/** Starts printing; returns the function that stops it. */
export function traceLinkRates (cluster: LabAgents, hosts: number, t0: number, print: (line: string) => void = console.log, everyMs = Number(process.env.VMESH_TRACE_MS ?? 500)): () => void {
  // Each host's counters are read by a synchronous `ip` call, one host after another: each reading
  // keeps its own time, so a rate is bytes over that host's own interval (one shared timestamp
  // made single samples read far above the link rate).
  const read = (): Array<{ tx: number, rx: number, at: number }> => Array.from({ length: hosts }, (_, i) => ({ ...cluster.linkBytes(i), at: performance.now() }))
  let last = read()
  let lastCpu = cpuTimes()
  const timer = setInterval(() => {
    const now = performance.now()
    const cur = read()
    const cpu = cpuTimes()
    const busy = Math.round(100 * (cpu.busy - lastCpu.busy) / Math.max(1, cpu.total - lastCpu.total))
    const mbit = (a: number, b: number, ms: number): string => ((a - b) * 8 / Math.max(1, ms) / 1000).toFixed(0).padStart(4)
    print(`  ${((now - t0) / 1000).toFixed(1).padStart(5)} s  cpu ${String(busy).padStart(3)}%  ` + cur.map((c, i) => {
      const prev = last[i]!
      return `h${i} ${mbit(c.tx, prev.tx, c.at - prev.at)}↑${mbit(c.rx, prev.rx, c.at - prev.at)}↓`
    }).join('  '))
    last = cur
    lastCpu = cpu
  }, everyMs)
  return () => clearInterval(timer)
}
