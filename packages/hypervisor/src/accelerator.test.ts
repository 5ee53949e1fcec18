import { describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chooseAccelerator, parseCpuFlags, probeAccelerator } from './accelerator.js'

const flags = (...f: string[]): Set<string> => new Set(f)

describe('chooseAccelerator', () => {
  it('uses KVM only when the cpu has vmx or svm and /dev/kvm opens', () => {
    expect(chooseAccelerator({ cpuFlags: flags('vmx', 'sse2'), kvmOpens: true }).accel).toBe('kvm')
    expect(chooseAccelerator({ cpuFlags: flags('svm'), kvmOpens: true }).accel).toBe('kvm')
  })
  it('does not trust a /dev/kvm that opens when the cpu lacks vmx/svm', () => {
    const c = chooseAccelerator({ cpuFlags: flags('sse2', 'hypervisor'), kvmOpens: true })
    expect(c.accel).toBe('tcg')
    expect(c.reason).toMatch(/no vmx\/svm/)
  })
  it('falls back to TCG when /dev/kvm does not open', () => {
    const c = chooseAccelerator({ cpuFlags: flags('vmx'), kvmOpens: false, kvmError: 'ENOENT' })
    expect(c.accel).toBe('tcg')
    expect(c.reason).toContain('ENOENT')
  })
  it('honours overrides, refusing kvm when the device cannot open', () => {
    expect(chooseAccelerator({ cpuFlags: flags('vmx'), kvmOpens: true }, 'tcg').accel).toBe('tcg')
    expect(chooseAccelerator({ cpuFlags: flags(), kvmOpens: true }, 'kvm').accel).toBe('kvm')
    expect(() => chooseAccelerator({ cpuFlags: flags('vmx'), kvmOpens: false, kvmError: 'EACCES' }, 'kvm')).toThrow(/--accel tcg/)
    expect(chooseAccelerator({ cpuFlags: flags('vmx'), kvmOpens: true }, 'auto').accel).toBe('kvm')
  })
})

describe('probeAccelerator', () => {
  it('reads flags from cpuinfo and tries to open the device', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-accel-'))
    try {
      writeFileSync(join(dir, 'cpuinfo'), 'processor\t: 0\nflags\t\t: fpu VMX sse2\n\nprocessor\t: 1\nflags\t\t: fpu vmx\n')
      const p = await probeAccelerator({ cpuinfo: join(dir, 'cpuinfo'), kvm: join(dir, 'no-kvm') })
      expect(p.cpuFlags.has('vmx')).toBe(true)
      expect(p.kvmOpens).toBe(false)
      expect(p.kvmError).toBe('ENOENT')
      writeFileSync(join(dir, 'kvm'), '')
      expect((await probeAccelerator({ cpuinfo: join(dir, 'cpuinfo'), kvm: join(dir, 'kvm') })).kvmOpens).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  it('parses flag lines only', () => {
    expect([...parseCpuFlags('model name : vmx inside a name\nflags : a b\n')]).toEqual(['a', 'b'])
  })
})
