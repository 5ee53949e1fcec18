import { describe, expect, it } from 'vitest'
import { precopyUnsafeReason } from './precopy-safety.js'

describe('precopyUnsafeReason', () => {
  it('refuses pre-copy under TCG before QEMU 9.0', () => {
    expect(precopyUnsafeReason('tcg', { major: 7, minor: 2, micro: 22 })).toMatch(/TCG with QEMU 7\.2\.22.*9\.0/)
    expect(precopyUnsafeReason('tcg', { major: 8, minor: 2, micro: 0 })).toMatch(/loses guest writes/)
  })
  it('allows pre-copy under TCG from QEMU 9.0 and under KVM on any version', () => {
    expect(precopyUnsafeReason('tcg', { major: 9, minor: 0, micro: 0 })).toBeUndefined()
    expect(precopyUnsafeReason('tcg', { major: 10, minor: 1, micro: 0 })).toBeUndefined()
    expect(precopyUnsafeReason('kvm', { major: 7, minor: 2, micro: 22 })).toBeUndefined()
  })
})
