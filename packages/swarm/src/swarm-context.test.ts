import { describe, expect, it } from 'vitest'
import { computeLayerHash, createManifest, encodeManifest, type Layer } from '@vmesh/store'
import { manifestInfo } from './swarm-context.js'

const h = (c: string): string => c.repeat(64)
const CHUNK = 65536
const layer = (kind: Layer['kind'], chunks: Array<string | null>): Layer => ({ kind, name: kind, size: chunks.length * CHUNK, chunkSize: CHUNK, hash: computeLayerHash({ size: chunks.length * CHUNK, chunkSize: CHUNK, chunks }), chunks })

describe('manifest info', () => {
  it('lists the chunks of every layer but memory first, by their index in first-use order', () => {
    const m = createManifest({ name: 'snap', layers: [layer('disk-base', [h('a')]), layer('memory', [h('b'), null, h('c'), h('a')]), layer('device-state', [h('d')]), layer('boot', [h('b')])] })
    const info = manifestInfo(h('0'), encodeManifest(m), m)
    expect(info.chunks.map((c) => c.hash[0])).toEqual(['a', 'b', 'c', 'd'])
    expect(info.first).toEqual([0, 1, 3])
  })

  it('puts nothing first when no layer is memory (an image): every seed starts at its own offset', () => {
    const m = createManifest({ name: 'image', layers: [layer('disk-base', [h('a'), h('b')])] })
    expect(manifestInfo(h('0'), encodeManifest(m), m).first).toEqual([])
  })
})
