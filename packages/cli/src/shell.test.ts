import { describe, it, expect } from 'vitest'
import { complete, splitWords } from './shell.js'

describe('shell line handling', () => {
  it('completes command names, options and status values', () => {
    expect(complete('me')).toEqual([['members'], 'me'])
    expect(complete('')[0]).toEqual(expect.arrayContaining(['help', 'members', 'stats', 'watch', 'exit']))
    expect(complete('members --st')).toEqual([['--status'], '--st'])
    expect(complete('members --status su')).toEqual([['suspect'], 'su'])
    expect(complete('nosuch --x')).toEqual([[], '--x'])
    expect(complete('snapshot l')).toEqual([['ls'], 'l'])
    expect(complete('snapshot ')).toEqual([['ls', 'rm'], ''])
    expect(complete('snapshot rm abc --f')).toEqual([['--force'], '--f'])
    expect(complete('image ')).toEqual([['ls', 'push', 'rm'], ''])
    expect(complete('image push web --h')).toEqual([['--hosts'], '--h'])
  })

  it('splits words and honours quotes', () => {
    expect(splitWords('  members   --status alive ')).toEqual(['members', '--status', 'alive'])
    expect(splitWords('a "b c" \'d e\'')).toEqual(['a', 'b c', 'd e'])
    expect(splitWords('')).toEqual([])
  })
})
