import { describe, it, expect } from 'vitest'
import { supersedes } from './claims.js'
import type { Claim, MemberStatus } from './claims.js'

const c = (status: MemberStatus, incarnation: number): Claim => ({ status, incarnation })

describe('SWIM claim precedence', () => {
  it('anything replaces nothing', () => {
    expect(supersedes(c('alive', 0), undefined)).toBe(true)
  })

  it('alive needs a higher incarnation: refutation and return from the dead', () => {
    expect(supersedes(c('alive', 1), c('alive', 1))).toBe(false)
    expect(supersedes(c('alive', 1), c('suspect', 1))).toBe(false)
    expect(supersedes(c('alive', 2), c('suspect', 1))).toBe(true)
    expect(supersedes(c('alive', 2), c('dead', 1))).toBe(true)
    expect(supersedes(c('alive', 2), c('left', 1))).toBe(true)
    expect(supersedes(c('alive', 1), c('dead', 1))).toBe(false)
  })

  it('suspect overrides alive at the same incarnation, not an older one', () => {
    expect(supersedes(c('suspect', 1), c('alive', 1))).toBe(true)
    expect(supersedes(c('suspect', 1), c('alive', 2))).toBe(false)
    expect(supersedes(c('suspect', 1), c('suspect', 1))).toBe(false)
    expect(supersedes(c('suspect', 2), c('suspect', 1))).toBe(true)
    expect(supersedes(c('suspect', 1), c('dead', 1))).toBe(false)
  })

  it('dead overrides alive and suspect at the same incarnation, and is final for it', () => {
    expect(supersedes(c('dead', 1), c('alive', 1))).toBe(true)
    expect(supersedes(c('dead', 1), c('suspect', 1))).toBe(true)
    expect(supersedes(c('dead', 1), c('dead', 1))).toBe(false)
    expect(supersedes(c('dead', 1), c('left', 1))).toBe(false)
    expect(supersedes(c('dead', 0), c('alive', 1))).toBe(false)
  })

  it('left explains a death at the same incarnation but never repeats', () => {
    expect(supersedes(c('left', 1), c('dead', 1))).toBe(true)
    expect(supersedes(c('left', 1), c('alive', 1))).toBe(true)
    expect(supersedes(c('left', 1), c('left', 1))).toBe(false)
    expect(supersedes(c('left', 1), c('alive', 2))).toBe(false)
  })
})
