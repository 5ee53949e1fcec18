import { describe, expect, it } from 'vitest'
import { DEFAULT_SWARM_CONFIG, parseSwarmTuning } from './swarm-config.js'

describe('parseSwarmTuning', () => {
  it('is empty when unset or blank', () => {
    expect(parseSwarmTuning(undefined)).toEqual({})
    expect(parseSwarmTuning('  ')).toEqual({})
  })

  it('takes known numeric fields', () => {
    expect(parseSwarmTuning('{"perLinkInflight":2,"endgameFraction":0.05}')).toEqual({ perLinkInflight: 2, endgameFraction: 0.05 })
    expect(Object.keys(DEFAULT_SWARM_CONFIG)).toContain('perLinkInflight')
  })

  it('refuses what is not a JSON object of known finite numbers >= 0, naming the problem', () => {
    expect(() => parseSwarmTuning('{perLinkInflight:2}')).toThrow(/not JSON/)
    expect(() => parseSwarmTuning('[1]')).toThrow(/JSON object/)
    expect(() => parseSwarmTuning('null')).toThrow(/JSON object/)
    expect(() => parseSwarmTuning('{"perLinkInflite":2}')).toThrow(/unknown field "perLinkInflite"/)
    expect(() => parseSwarmTuning('{"__proto__":2}')).toThrow(/unknown field/)
    expect(() => parseSwarmTuning('{"perLinkInflight":"2"}')).toThrow(/finite number/)
    expect(() => parseSwarmTuning('{"perLinkInflight":-1}')).toThrow(/finite number/)
    expect(() => parseSwarmTuning(`{"perLinkInflight":${'9'.repeat(5000)}}`)).toThrow(/at most/)
  })
})
