// Chooses between KVM and TCG. KVM is used only where it really works: the CPU advertises vmx or
// svm AND /dev/kvm opens. Some machines expose a /dev/kvm from a software hypervisor that cannot
// boot a standard kernel (no vmx/svm in cpuinfo), so the device node alone is not trusted.
import { open } from 'node:fs/promises'
import { readFile } from 'node:fs/promises'

export type Accelerator = 'kvm' | 'tcg'

export interface AcceleratorChoice {
  accel: Accelerator
  /** One line a person can read: why this accelerator was chosen. */
  reason: string
}

export interface AcceleratorProbe {
  /** CPU flags from /proc/cpuinfo (lower case). */
  cpuFlags: Set<string>
  /** Whether /dev/kvm opened read-write. */
  kvmOpens: boolean
  /** Error text when /dev/kvm did not open. */
  kvmError?: string
}

/** Pure decision, driven directly by tests. */
export function chooseAccelerator(probe: AcceleratorProbe, override?: Accelerator | 'auto'): AcceleratorChoice {
  if (override === 'tcg') return { accel: 'tcg', reason: 'forced by --accel tcg' }
  const virt = probe.cpuFlags.has('vmx') ? 'vmx' : probe.cpuFlags.has('svm') ? 'svm' : undefined
  if (override === 'kvm') {
    if (!probe.kvmOpens) throw new Error(`--accel kvm asked for, but /dev/kvm does not open (${probe.kvmError ?? 'unknown error'}); use --accel tcg`)
    return { accel: 'kvm', reason: `forced by --accel kvm${virt ? '' : ' (cpu has no vmx/svm flag)'}` }
  }
  if (!virt) return { accel: 'tcg', reason: 'cpu has no vmx/svm flag, so /dev/kvm is not trusted; using TCG emulation' }
  if (!probe.kvmOpens) return { accel: 'tcg', reason: `cpu has ${virt} but /dev/kvm does not open (${probe.kvmError ?? 'unknown'}); using TCG emulation` }
  return { accel: 'kvm', reason: `cpu has ${virt} and /dev/kvm opens` }
}

export function parseCpuFlags(cpuinfo: string): Set<string> {
  const flags = new Set<string>()
  for (const line of cpuinfo.split('\n')) {
    const m = /^flags\s*:\s*(.*)$/.exec(line)
    if (m?.[1]) for (const f of m[1].trim().split(/\s+/)) flags.add(f.toLowerCase())
  }
  return flags
}

export async function probeAccelerator(paths: { cpuinfo?: string; kvm?: string } = {}): Promise<AcceleratorProbe> {
  const cpuinfo = await readFile(paths.cpuinfo ?? '/proc/cpuinfo', 'utf8').catch(() => '')
  try {
    const fh = await open(paths.kvm ?? '/dev/kvm', 'r+')
    await fh.close()
    return { cpuFlags: parseCpuFlags(cpuinfo), kvmOpens: true }
  } catch (err) {
    return { cpuFlags: parseCpuFlags(cpuinfo), kvmOpens: false, kvmError: (err as NodeJS.ErrnoException).code ?? String(err) }
  }
}

/** Probe this host and choose; `override` is the value of `--accel` (kvm, tcg or auto). */
export async function detectAccelerator(override?: Accelerator | 'auto'): Promise<AcceleratorChoice> {
  return chooseAccelerator(await probeAccelerator(), override)
}
