// Everything the swarm reads from the network is bounded and checked: random bytes, oversized
// frames, wrong counts and truncated replies give a SwarmProtocolError (counted by the service),
// never another exception and never an allocation sized by the peer.
import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { encodeFrame, pb } from '@vmesh/wire'
import { encodeReplyHeader, encodeRequest, readReplyParts, RequestParser } from './chunk-wire.js'
import {
  checkIndices, checkProgress, checkStart, decodeHave, decodeLinkFrame, decodeSessionFrame, SwarmProtocolError, swarmLimits, SWARM_VERSION
} from './swarm-protocol.js'

async function * pieces (bufs: Uint8Array[]): AsyncGenerator<Buffer> {
  for (const b of bufs) yield Buffer.from(b)
}

/** Whole replies, each chunk's parts put together. */
async function collect (bufs: Uint8Array[], max = 1024): Promise<Array<{ index: number, missing: boolean, none: boolean, data: string }>> {
  const out: Array<{ index: number, missing: boolean, none: boolean, data: string }> = []
  for await (const p of readReplyParts(pieces(bufs), max)) {
    if (p.kind === 'header') out.push({ index: p.index, missing: p.missing, none: p.none, data: '' })
    else (out[out.length - 1] as { data: string }).data += p.data.toString('hex')
  }
  return out
}

function onlyProtocolErrors (fn: () => unknown): void {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(SwarmProtocolError) }
}

const goodStart = (): InstanceType<typeof pb.SwarmStart> => pb.SwarmStart.create({
  version: SWARM_VERSION,
  sessionId: new Uint8Array(16),
  manifest: new Uint8Array([1]),
  peers: [{ peerId: new Uint8Array(38), addrs: [new Uint8Array(8)], seed: true, name: 'h0' }, { peerId: new Uint8Array(38), seed: false }]
})

describe('swarm frames', () => {
  it('random bytes on either protocol give protocol errors only', () => {
    for (let i = 0; i < 2000; i++) {
      const b = randomBytes(1 + (i % 200))
      onlyProtocolErrors(() => decodeSessionFrame(b))
      onlyProtocolErrors(() => decodeLinkFrame(b))
    }
  })

  it('refuses oversized frames before decoding them', () => {
    expect(() => decodeLinkFrame(new Uint8Array(swarmLimits.linkFrameBytes + 1))).toThrow(/exceeds/)
    expect(() => decodeSessionFrame(new Uint8Array(swarmLimits.sessionFrameBytes + 1))).toThrow(/exceeds/)
    expect(() => decodeLinkFrame(new Uint8Array(0))).toThrow(/no body/)
  })

  it('checks a start: version, session id, peer count and sizes, a seed', () => {
    expect(checkStart(goodStart()).peers).toHaveLength(2)
    const bad = (patch: Record<string, unknown>, re: RegExp): void => {
      expect(() => checkStart({ ...goodStart(), ...patch })).toThrow(re)
    }
    bad({ version: 2 }, /version 2 is not supported/)
    bad({ sessionId: new Uint8Array(15) }, /session id/)
    bad({ manifest: new Uint8Array(0) }, /no manifest/)
    bad({ peers: [] }, /lists 0 peers/)
    bad({ peers: Array.from({ length: swarmLimits.maxPeers + 1 }, () => ({ peerId: new Uint8Array(38), seed: true })) }, /lists 1025 peers/)
    bad({ peers: [{ peerId: new Uint8Array(0), seed: true }] }, /peer id/)
    bad({ peers: [{ peerId: new Uint8Array(200), seed: true }] }, /peer id/)
    bad({ peers: [{ peerId: new Uint8Array(38), seed: true, addrs: Array.from({ length: 17 }, () => new Uint8Array(4)) }] }, /17 addresses/)
    bad({ peers: [{ peerId: new Uint8Array(38), seed: true, addrs: [new Uint8Array(300)] }] }, /oversized/)
    bad({ peers: [{ peerId: new Uint8Array(38), seed: true, name: 'x'.repeat(65) }] }, /name too long/)
    bad({ peers: [{ peerId: new Uint8Array(38), seed: false }] }, /no seed/)
  })

  it('checks have-maps, index lists and progress reports', () => {
    expect(() => decodeHave(new Uint8Array(2), 100)).toThrow(SwarmProtocolError)
    expect(decodeHave(new Uint8Array(13), 100).count).toBe(100)
    expect(() => checkIndices([0, 5, 100], 100, 64, 'have update')).toThrow(/chunk 100, outside/)
    expect(() => checkIndices(Array<number>(65).fill(0), 100, 64, 'chunk request')).toThrow(/65 chunks; 64 allowed/)
    expect(() => checkProgress({ state: 'exploded' })).toThrow(/unknown progress state/)
    expect(() => checkProgress({ state: 'done', error: 'x'.repeat(2000) })).toThrow(/too long/)
    expect(checkProgress({ state: 'done', bytesDone: 5 }).bytesDone).toBe(5)
  })
})

describe('chunk requests and replies on the bulk channel', () => {
  it('parses requests split at every byte, and bounds them', () => {
    const wire = Buffer.concat([encodeRequest([1, 2, 3]), encodeRequest([], 4), encodeRequest([9], 1)])
    for (let step = 1; step <= wire.length; step++) {
      const p = new RequestParser(10)
      const got = []
      for (let at = 0; at < wire.length; at += step) got.push(...p.push(wire.subarray(at, at + step)))
      expect(got).toEqual([{ indices: [1, 2, 3], fresh: 0 }, { indices: [], fresh: 4 }, { indices: [9], fresh: 1 }])
    }
    expect(() => new RequestParser(10).push(encodeRequest([10]))).toThrow(/outside/)
    expect(() => new RequestParser(10).push(encodeRequest([], 65))).toThrow(/65 fresh/)
    expect(() => new RequestParser(10).push(encodeFrame(new Uint8Array(swarmLimits.bulkFrameBytes + 1)).subarray(0, 4))).toThrow(SwarmProtocolError)
    for (let i = 0; i < 500; i++) onlyProtocolErrors(() => new RequestParser(10).push(randomBytes(1 + (i % 40))))
  })

  it('reads replies split at every byte boundary', async () => {
    const data = randomBytes(300)
    const wire = Buffer.concat([encodeReplyHeader(4, 300, false), data, encodeReplyHeader(7, 0, true), encodeReplyHeader(0, 0, false, true)])
    for (const step of [1, 2, 3, 7, 64, 299, wire.length]) {
      const bufs = []
      for (let at = 0; at < wire.length; at += step) bufs.push(wire.subarray(at, at + step))
      expect(await collect(bufs)).toEqual([
        { index: 4, missing: false, none: false, data: data.toString('hex') },
        { index: 7, missing: true, none: false, data: '' },
        { index: 0, missing: false, none: true, data: '' }
      ])
    }
  })

  it('refuses a reply larger than any chunk of the manifest, a cut-off reply, and garbage', async () => {
    await expect(collect([encodeReplyHeader(0, 2048, false)], 1024)).rejects.toThrow(/chunks here hold 1..1024/)
    await expect(collect([encodeReplyHeader(0, 0, false)], 1024)).rejects.toThrow(SwarmProtocolError)
    await expect(collect([encodeReplyHeader(0, 10, true)], 1024)).rejects.toThrow(/carries bytes/)
    await expect(collect([encodeReplyHeader(0, 100, false), randomBytes(50)], 1024)).rejects.toThrow(/ended in the middle/)
    await expect(collect([new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])])).rejects.toThrow(/too long/)
    await expect(collect([encodeFrame(new Uint8Array(swarmLimits.bulkFrameBytes + 1))])).rejects.toThrow(/exceeds/)
    for (let i = 0; i < 300; i++) {
      await collect([randomBytes(1 + (i % 64))]).catch((err) => { expect(err).toBeInstanceOf(SwarmProtocolError) })
    }
  })

  it('gives the bytes of a reply as they arrive, without waiting for the whole chunk', async () => {
    const data = randomBytes(1000)
    const wire = Buffer.concat([encodeReplyHeader(2, 1000, false), data])
    async function * slowly (): AsyncGenerator<Buffer> {
      for (let at = 0; at < wire.length; at += 300) yield wire.subarray(at, at + 300)
    }
    const parts = []
    for await (const p of readReplyParts(slowly(), 1024)) parts.push(p)
    expect(parts[0]).toMatchObject({ kind: 'header', index: 2, size: 1000, pieceHashes: [] })
    const bodies = parts.slice(1) as Array<{ kind: 'body', data: Buffer, last: boolean }>
    expect(bodies.length).toBeGreaterThan(2)
    expect(bodies.map((b) => b.last)).toEqual([...Array<boolean>(bodies.length - 1).fill(false), true])
    expect(Buffer.concat(bodies.map((b) => b.data)).equals(data)).toBe(true)
  })

  it('bounds the piece hashes a reply header gives: one of 32 bytes per 256 KiB piece', async () => {
    const size = 600 * 1024
    const ok = [randomBytes(32), randomBytes(32), randomBytes(32)]
    const read = async (hashes: Uint8Array[]): Promise<unknown> => {
      for await (const p of readReplyParts(pieces([encodeReplyHeader(0, size, false, false, hashes)]), 1 << 20)) return p
    }
    expect(await read(ok)).toMatchObject({ kind: 'header', size, pieceHashes: ok })
    await expect(read(ok.slice(0, 2))).rejects.toThrow(/gives 2 piece hashes; it has 3 pieces/)
    await expect(read([...ok, randomBytes(32)])).rejects.toThrow(SwarmProtocolError)
    await expect(read([ok[0] as Buffer, ok[1] as Buffer, randomBytes(31)])).rejects.toThrow(/32-byte/)
    await expect(collect([encodeReplyHeader(0, 0, true, false, [randomBytes(32)])])).rejects.toThrow(SwarmProtocolError)
  })
})
