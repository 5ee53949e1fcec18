// Starting and stopping QEMU processes. QEMU daemonizes itself (-daemonize): its parent exits only
// once the machine is set up, with a non-zero code and QEMU's own message when it is not, so a bad
// image or option fails here with QEMU's words; and the VM outlives a restarted agent, which finds
// it again through the pid file. Only a pid whose command line names this VM is ever signalled.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'

export class QemuStartError extends Error {}

export async function startQemu(binary: string, args: string[], pidFile: string, timeoutMs = 60_000): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    execFile(binary, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (err) {
        const msg = String(stderr).trim().split('\n').filter(Boolean).slice(-3).join('; ')
        reject(new QemuStartError(`QEMU did not start: ${msg || err.message}`))
      } else resolve()
    })
  })
  const pid = Number((await readFile(pidFile, 'utf8')).trim())
  if (!Number.isInteger(pid) || pid <= 0) throw new QemuStartError(`QEMU wrote no valid pid to ${pidFile}`)
  return pid
}

/** True when `pid` is alive and its command line contains `marker` (guards against pid reuse). */
export async function isOurQemu(pid: number, marker: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8')
    return cmdline.includes(marker)
  } catch {
    return false
  }
}

async function gone(pid: number, marker: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (!(await isOurQemu(pid, marker))) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return !(await isOurQemu(pid, marker))
}

/** Stops our QEMU: SIGTERM, then SIGKILL after `graceMs`. No-op when it is already gone. */
export async function stopQemu(pid: number, marker: string, graceMs = 3000): Promise<void> {
  if (!(await isOurQemu(pid, marker))) return
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return
  }
  if (await gone(pid, marker, graceMs)) return
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    return
  }
  if (!(await gone(pid, marker, 5000))) throw new Error(`QEMU pid ${pid} did not exit after SIGKILL`)
}

/** Proportional set size and resident size of a process, in KiB (from /proc/<pid>/smaps_rollup). */
export async function processMemory(pid: number): Promise<{ pssKiB: number; rssKiB: number }> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
  const get = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0)
  return { pssKiB: get('Pss'), rssKiB: get('Rss') }
}
