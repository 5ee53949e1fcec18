// For benchmarks' --trace: every 500 ms (VMESH_TRACE_MS to change it), each lab host's upload and
// download rate in mbit/s, read from its interface counters.
import type { LabAgents } from './lab-agents.ts'

/** Starts printing; returns the function that stops it. */
export function traceLinkRates (cluster: LabAgents, hosts: number, t0: number, print: (line: string) => void = console.log, everyMs = Number(process.env.VMESH_TRACE_MS ?? 500)): () => void {
  const read = (): Array<{ tx: number, rx: number }> => Array.from({ length: hosts }, (_, i) => cluster.linkBytes(i))
  let last = read()
  let lastAt = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    const cur = read()
    const mbit = (a: number, b: number): string => ((a - b) * 8 / (now - lastAt) / 1000).toFixed(0).padStart(4)
    print(`  ${((now - t0) / 1000).toFixed(1).padStart(5)} s  ` + cur.map((c, i) => `h${i} ${mbit(c.tx, last[i]!.tx)}↑${mbit(c.rx, last[i]!.rx)}↓`).join('  '))
    last = cur
    lastAt = now
  }, everyMs)
  return () => clearInterval(timer)
}
