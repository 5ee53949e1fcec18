import { describe, it, expect } from 'vitest'
import { generateClusterKey, parseClusterKey } from './cluster-key.js'

describe('cluster key', () => {
  it('round-trips a generated key in the pnet format', () => {
    const text = generateClusterKey()
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    expect(new TextDecoder().decode(parseClusterKey(text))).toBe(text.trimEnd())
  })

  it('generates a different key each time', () => {
    expect(generateClusterKey()).not.toBe(generateClusterKey())
  })

  it.each([
    ['empty', ''],
    ['wrong header', '/key/other/\n/base16/\n' + 'a'.repeat(64)],
    ['short key', '/key/swarm/psk/1.0.0/\n/base16/\nabcd'],
    ['non-hex', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'z'.repeat(64)],
    ['extra lines', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'a'.repeat(64) + '\nmore']
  ])('rejects %s with a message saying how to make one', (_what, text) => {
    expect(() => parseClusterKey(text)).toThrow(/cluster key/)
  })
})
