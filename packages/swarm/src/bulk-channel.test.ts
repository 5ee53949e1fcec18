// The bulk channel on real loopback sockets: opening, both directions, and every way a peer or a
// man in the middle can misbehave. Traffic goes only to 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { deriveBulkKeys, RecordAuthError, RecordTooLargeError, TruncatedStreamError } from './bulk-cipher.js'
import { dialBulkChannel, type BulkChannel } from './bulk-channel.js'
import { BulkListener } from './bulk-listener.js'
import { acceptBulkOffer, createBulkOffer, decodeBulkOffer } from './bulk-offer.js'

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

async function listener (opts: ConstructorParameters<typeof BulkListener>[0] = {}): Promise<BulkListener> {
  const l = new BulkListener({ host: '127.0.0.1', ...opts })
  await l.listen()
  cleanup.push(async () => await l.close())
  return l
}

async function pair (l: BulkListener): Promise<{ offerer: BulkChannel, accepter: BulkChannel }> {
  const { offer, channel } = createBulkOffer(l, { localPeer: 'A', remotePeer: 'B' })
  const accepter = await acceptBulkOffer(offer, { localPeer: 'B', remotePeer: 'A' })
  const offerer = await channel
  cleanup.push(() => { accepter.destroy(); offerer.destroy() })
  return { offerer, accepter }
}

async function drain (ch: BulkChannel): Promise<{ bytes: number, sha: string }> {
  const h = createHash('sha256')
  let bytes = 0
  for await (const piece of ch) { h.update(piece); bytes += piece.length }
  return { bytes, sha: h.digest('hex') }
}

async function writeAll (ch: BulkChannel, data: Buffer, step: number): Promise<void> {
  for (let at = 0; at < data.length; at += step) await ch.write(data.subarray(at, at + step))
  await ch.end()
}

/** A TCP relay to the listener that lets a test rewrite or cut the dialer's bytes. */
async function relay (target: { host: string, port: number }, edit: (chunk: Buffer, offset: number, upstream: Socket) => Buffer | null): Promise<{ port: number }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((down) => {
    const up = connect(target.port, target.host)
    sockets.add(down).add(up)
    let offset = 0
    down.on('data', (chunk: Buffer) => {
      const out = edit(chunk, offset, up)
      offset += chunk.length
      if (out !== null) up.write(out)
    })
    up.on('data', (chunk: Buffer) => down.write(chunk))
    down.on('end', () => up.end())
    up.on('end', () => down.end())
    down.on('error', () => up.destroy())
    up.on('error', () => down.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanup.push(() => { server.close(); for (const s of sockets) s.destroy() })
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { port: a.port }
}

describe('bulk channel', () => {
  it('carries data both ways intact, with small and large writes', async () => {
    const l = await listener()
    const { offerer, accepter } = await pair(l)
    const up = randomBytes(8 * 1024 * 1024 + 12345)
    const down = randomBytes(300_001)
    const [gotUp, gotDown] = await Promise.all([
      drain(offerer),
      drain(accepter),
      writeAll(accepter, up, 1 << 20),
      writeAll(offerer, down, 1000)
    ])
    expect(gotUp).toEqual({ bytes: up.length, sha: createHash('sha256').update(up).digest('hex') })
    expect(gotDown).toEqual({ bytes: down.length, sha: createHash('sha256').update(down).digest('hex') })
    expect(accepter.bytesWritten).toBe(up.length)
    expect(offerer.bytesRead).toBe(up.length)
    expect(l.stats).toMatchObject({ accepted: 1, rejected: 0 })
  })

  it('the offer decodes to what the listener expects and rejects malformed offers', async () => {
    const l = await listener()
    const { offer, channel } = createBulkOffer(l, { localPeer: 'A', remotePeer: 'B', ttlMs: 100 })
    const o = decodeBulkOffer(offer)
    expect(o).toMatchObject({ host: '127.0.0.1', port: l.address.port, maxRecordBytes: 1 << 20, ttlMs: 100 })
    expect(() => decodeBulkOffer(randomBytes(2000))).toThrow(/exceeds/)
    expect(() => decodeBulkOffer(Buffer.from([0x08, 0x02]))).toThrow(/version 2/)
    await expect(channel).rejects.toThrow(/did not connect within 100 ms/)
  })

  it('refuses a wrong ticket, and a right ticket with the wrong key without burning it', async () => {
    const l = await listener()
    const secret = randomBytes(32)
    const ticket = randomBytes(16)
    const keys = (role: 'offerer' | 'accepter', s = secret): ReturnType<typeof deriveBulkKeys> =>
      deriveBulkKeys({ secret: s, ticket, offerer: 'A', accepter: 'B' }, role)
    const accepted = l.expect(ticket, keys('offerer'), 5000)
    const at = { host: '127.0.0.1', port: l.address.port }
    await expect(dialBulkChannel({ ...at, ticket: randomBytes(16), keys: keys('accepter') })).rejects.toThrow(/ticket refused/)
    await expect(dialBulkChannel({ ...at, ticket, keys: keys('accepter', randomBytes(32)) })).rejects.toThrow(/ticket refused/)
    expect(l.stats).toMatchObject({ accepted: 0, rejected: 2, unknownTicket: 1, badKey: 1 })
    const ch = await dialBulkChannel({ ...at, ticket, keys: keys('accepter') })
    cleanup.push(() => ch.destroy())
    await accepted
    // One-time: the same ticket cannot open a second channel.
    await expect(dialBulkChannel({ ...at, ticket, keys: keys('accepter') })).rejects.toThrow(/ticket refused/)
    expect(l.stats).toMatchObject({ accepted: 1, unknownTicket: 2 })
  })

  it('refuses an expired ticket', async () => {
    const l = await listener()
    const { offer, channel } = createBulkOffer(l, { localPeer: 'A', remotePeer: 'B', ttlMs: 50 })
    await expect(channel).rejects.toThrow(/did not connect/)
    await expect(acceptBulkOffer(offer, { localPeer: 'B', remotePeer: 'A' })).rejects.toThrow(/ticket refused or expired/)
  })

  it('survives random bytes and silent connections, closing and counting each', async () => {
    const l = await listener({ helloTimeoutMs: 200 })
    const closed = async (s: Socket): Promise<void> => await new Promise((resolve) => s.once('close', () => resolve()))
    for (let i = 0; i < 5; i++) {
      const s = connect(l.address.port, '127.0.0.1')
      s.on('error', () => {})
      s.write(randomBytes(4096))
      await closed(s)
    }
    // The right magic followed by garbage: refused once the hello is complete.
    const m = connect(l.address.port, '127.0.0.1')
    m.on('error', () => {})
    m.write(Buffer.concat([Buffer.from('VMB1'), randomBytes(100)]))
    await closed(m)
    const silent = connect(l.address.port, '127.0.0.1')
    await closed(silent)
    expect(l.stats.rejected).toBe(7)
    expect(l.stats.helloTimeout).toBe(1)
    expect(l.stats.unknownTicket).toBe(1)
    // Still serving real peers.
    const { offerer, accepter } = await pair(l)
    await Promise.all([writeAll(accepter, Buffer.from('still here'), 100), drain(offerer).then((r) => expect(r.bytes).toBe(10))])
  })

  it('a tampered byte in flight fails the receiver, never delivering the forged record', async () => {
    const l = await listener()
    const target = 300_000
    const r = await relay(l.address, (chunk, offset) => {
      if (offset <= target && target < offset + chunk.length) chunk[target - offset] = (chunk[target - offset] as number) ^ 0x20
      return chunk
    })
    const second = createBulkOffer(l, { localPeer: 'A', remotePeer: 'B' })
    const o = decodeBulkOffer(second.offer)
    const keys = deriveBulkKeys({ secret: o.secret, ticket: o.ticket, offerer: 'A', accepter: 'B' }, 'accepter')
    const viaRelay = await dialBulkChannel({ host: '127.0.0.1', port: r.port, ticket: o.ticket, keys, recordBytes: 64 * 1024 })
    cleanup.push(() => viaRelay.destroy())
    const offerer = await second.channel
    let delivered = 0
    const reading = (async () => { for await (const piece of offerer) delivered += piece.length })()
    void viaRelay.write(randomBytes(1 << 20)).catch(() => {})
    await expect(reading).rejects.toThrow(RecordAuthError)
    // Records before the tampered one arrive; the tampered record (at 300000 / 64 KiB) never does.
    expect(delivered).toBeLessThan(target)
    expect(delivered % (64 * 1024)).toBe(0)
  })

  it('a connection cut short is reported as truncated, not as a clean end', async () => {
    const l = await listener()
    const second = createBulkOffer(l, { localPeer: 'A', remotePeer: 'B' })
    const o = decodeBulkOffer(second.offer)
    const keys = deriveBulkKeys({ secret: o.secret, ticket: o.ticket, offerer: 'A', accepter: 'B' }, 'accepter')
    const cutAt = 500_000
    const r = await relay(l.address, (chunk, offset, upstream) => {
      if (offset >= cutAt) return null
      if (offset + chunk.length > cutAt) { upstream.end(chunk.subarray(0, cutAt - offset)); return null }
      return chunk
    })
    const dialer = await dialBulkChannel({ host: '127.0.0.1', port: r.port, ticket: o.ticket, keys })
    cleanup.push(() => dialer.destroy())
    const offerer = await second.channel
    const reading = drain(offerer)
    void writeAll(dialer, randomBytes(2 << 20), 1 << 20).catch(() => {})
    await expect(reading).rejects.toThrow(TruncatedStreamError)
  })

  it('rejects a peer that sends records larger than agreed', async () => {
    const l = await listener({ maxRecordBytes: 64 * 1024, recordBytes: 64 * 1024 })
    const { offer, channel } = createBulkOffer(l, { localPeer: 'A', remotePeer: 'B' })
    const o = decodeBulkOffer(offer)
    const keys = deriveBulkKeys({ secret: o.secret, ticket: o.ticket, offerer: 'A', accepter: 'B' }, 'accepter')
    // A misbehaving dialer that ignores the offer's limit.
    const dialer = await dialBulkChannel({ host: '127.0.0.1', port: o.port, ticket: o.ticket, keys, maxRecordBytes: 1 << 20, recordBytes: 1 << 20 })
    cleanup.push(() => dialer.destroy())
    const offerer = await channel
    const reading = drain(offerer)
    void dialer.write(randomBytes(1 << 20)).catch(() => {})
    await expect(reading).rejects.toThrow(RecordTooLargeError)
  })
})
