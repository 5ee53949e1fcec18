import { describe, expect, it } from 'vitest'
import { newestOf } from './snapshot-handlers.js'

describe('the basis of a clone elected before its snapshot exists', () => {
  it('is the newest snapshot of that VM which the host holds completely', () => {
    const list = [
      { manifestId: 'a', sourceVm: 'web', createdAtMs: 100, holders: ['h0'] },
      { manifestId: 'b', sourceVm: 'web', createdAtMs: 300, holders: [], partial: ['h0'] },
      { manifestId: 'c', sourceVm: 'web', createdAtMs: 200, holders: ['h1', 'h0'] },
      { manifestId: 'd', sourceVm: 'db', createdAtMs: 400, holders: ['h0'] }
    ]
    expect(newestOf(list, 'web', 'h0')).toBe('c')
    expect(newestOf(list, 'web', 'h2')).toBe('')
    expect(newestOf([], 'web', 'h0')).toBe('')
  })
})
