import { describe, expect, it } from 'vitest'
import { advertChanged, type AdvertSnapshot } from './advert-schedule.js'

const base: AdvertSnapshot = {
  resources: { cpuCores: 8, load1: 1, memTotalMib: 16_384, memFreeMib: 8000, diskTotalMib: 200_000, diskFreeMib: 100_000, ioUtil: 0.1, accel: 'kvm', vcpusReserved: 2, memReservedMib: 512 },
  holdings: '[[],[]]'
}
const with_ = (r: Partial<AdvertSnapshot['resources']>, holdings = base.holdings): AdvertSnapshot => ({ resources: { ...base.resources, ...r }, holdings })

describe('advertChanged', () => {
  it('publishes the first advert', () => {
    expect(advertChanged(undefined, base)).toBe(true)
  })

  it('skips an advert that would say nothing a placement notices', () => {
    expect(advertChanged(base, base)).toBe(false)
    expect(advertChanged(base, with_({ load1: 2.9, memFreeMib: 7800, diskFreeMib: 99_500, ioUtil: 0.25 }))).toBe(false)
  })

  it.each([
    ['load moved by a quarter of the cores', { load1: 3 }],
    ['a VM worth of memory', { memFreeMib: 7600 }],
    ['disk filled by a clone', { diskFreeMib: 97_000 }],
    ['the disk got busy', { ioUtil: 0.35 }],
    ['a reservation', { vcpusReserved: 3 }],
    ['reserved memory', { memReservedMib: 0 }],
    ['the accelerator', { accel: 'tcg' }],
    ['cores', { cpuCores: 4 }]
  ])('publishes when %s', (_what, r) => {
    expect(advertChanged(base, with_(r))).toBe(true)
  })

  it('publishes when the VMs or manifests held change', () => {
    expect(advertChanged(base, with_({}, '[[{"name":"web"}],[]]'))).toBe(true)
  })

  it('scales the memory step with the host', () => {
    const big = with_({ memTotalMib: 1_048_576, memFreeMib: 500_000 })
    expect(advertChanged(big, with_({ memTotalMib: 1_048_576, memFreeMib: 490_000 }))).toBe(false)
    expect(advertChanged(big, with_({ memTotalMib: 1_048_576, memFreeMib: 470_000 }))).toBe(true)
  })
})
