import { describe, it, expect, afterEach } from 'vitest'
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { splitRamStream, waitStreamComplete } from './ram-stream.js'

const PAGE = 4096
const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

const be32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const be64 = (n: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b }
const str = (s: string): Buffer => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')])
const page = (fill: number): Buffer => Buffer.alloc(PAGE, fill)

type Rec = { block?: string, offset: number, zero?: number, data?: Buffer }
/** A stream as QEMU 7.2's background snapshot writes it: pc.ram (4 pages) and a rom (1 page). */
function stream (records: Rec[], opts: { flags?: number } = {}): { bytes: Buffer, head: Buffer, tail: Buffer } {
  const sid = 2
  const head = Buffer.concat([
    be32(0x5145564d), be32(3), Buffer.from([0x07]), be32(13), Buffer.from('pc-i440fx-7.2'),
    Buffer.from([0x01]), be32(sid), str('ram'), be32(0), be32(4),
    be64(5 * PAGE + 0x04), str('pc.ram'), be64(4 * PAGE), str('pc.rom'), be64(PAGE), be64(0x10),
    Buffer.from([0x7e]), be32(sid)
  ])
  const body: Buffer[] = [Buffer.from([0x02]), be32(sid)]
  let last: string | undefined
  for (const r of records) {
    const cont = r.block === undefined || r.block === last
    const flags = (r.zero !== undefined ? 0x02 : 0x08) | (cont ? 0x20 : 0) | (opts.flags ?? 0)
    body.push(be64(r.offset + flags))
    if (!cont) { body.push(str(r.block as string)); last = r.block }
    body.push(r.zero !== undefined ? Buffer.from([r.zero]) : r.data as Buffer)
  }
  body.push(be64(0x10), Buffer.from([0x7e]), be32(sid))
  const tail = Buffer.concat([Buffer.from([0x04]), be32(3), str('timer'), be32(0), be32(2), Buffer.from('device bytes'), Buffer.from([0x7e]), be32(3), Buffer.from([0x00])])
  return { bytes: Buffer.concat([head, ...body, tail]), head, tail }
}

function run (bytes: Buffer): { dir: string, split: ReturnType<typeof splitRamStream> } {
  const dir = mkdtempSync(join(tmpdir(), 'vmesh-ramstream-'))
  dirs.push(dir)
  writeFileSync(join(dir, 'stream'), bytes)
  return { dir, split: splitRamStream(join(dir, 'stream'), { 'pc.ram': join(dir, 'mem') }, join(dir, 'dev')) }
}

describe('splitRamStream', () => {
  const good: Rec[] = [
    { block: 'pc.ram', offset: 0, data: page(1) },
    { offset: PAGE, zero: 0 },
    { block: 'pc.rom', offset: 0, data: page(9) },
    { block: 'pc.ram', offset: 3 * PAGE, data: page(3) },
    { offset: 2 * PAGE, zero: 0 }
  ]

  it('writes the memory block to its file (zero pages as holes) and keeps the rest as device state', async () => {
    const s = stream(good)
    const { dir, split } = run(s.bytes)
    expect(await split).toMatchObject({ dataPages: 2, zeroPages: 2, keptPages: 1 })
    const mem = readFileSync(join(dir, 'mem'))
    expect(mem.length).toBe(4 * PAGE)
    expect(mem.equals(Buffer.concat([page(1), page(0), page(0), page(3)]))).toBe(true)
    const dev = readFileSync(join(dir, 'dev'))
    // Header, configuration and setup verbatim; one section with the rom page; device sections verbatim.
    expect(dev.subarray(0, s.head.length).equals(s.head)).toBe(true)
    const romSection = Buffer.concat([Buffer.from([0x02]), be32(2), be64(0x08), str('pc.rom'), page(9), be64(0x10), Buffer.from([0x7e]), be32(2)])
    expect(dev.subarray(s.head.length, s.head.length + romSection.length).equals(romSection)).toBe(true)
    expect(dev.subarray(dev.length - s.tail.length).equals(s.tail)).toBe(true)
    expect(statSync(join(dir, 'dev')).size).toBe(s.head.length + romSection.length + s.tail.length)
  })

  it('follows a stream QEMU is still writing: waits at its end until the writer is done', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-ramstream-'))
    dirs.push(dir)
    const s = stream(good)
    const cut = s.head.length + 100 // inside the first page record
    writeFileSync(join(dir, 'stream'), s.bytes.subarray(0, cut))
    let writing = true
    let done = false
    const split = splitRamStream(join(dir, 'stream'), { 'pc.ram': join(dir, 'mem') }, join(dir, 'dev'), { readBytes: 64, writing: () => writing })
      .finally(() => { done = true })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(done).toBe(false) // at the end of what is written so far, waiting for more
    appendFileSync(join(dir, 'stream'), s.bytes.subarray(cut))
    writing = false
    expect(await split).toMatchObject({ dataPages: 2, zeroPages: 2, keptPages: 1 })
    expect(readFileSync(join(dir, 'mem')).equals(Buffer.concat([page(1), page(0), page(0), page(3)]))).toBe(true)
    // Without a writer, the same cut stream is simply truncated.
    const cutOnly = join(dir, 'cut')
    writeFileSync(cutOnly, s.bytes.subarray(0, cut))
    await expect(splitRamStream(cutOnly, { 'pc.ram': join(dir, 'mem2') }, join(dir, 'dev2'))).rejects.toThrow(/ends at byte/)
  })

  it('hands each memory chunk to onChunk once all its pages are in, zero chunks as null', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-ramstream-'))
    dirs.push(dir)
    const recs: Rec[] = [{ block: 'pc.ram', offset: 2 * PAGE, zero: 0 }, { offset: 0, data: page(1) }, { offset: 3 * PAGE, zero: 0 }, { offset: PAGE, zero: 0 }]
    writeFileSync(join(dir, 'stream'), stream(recs).bytes)
    const got: Array<[string, number, number, string | null]> = []
    await splitRamStream(join(dir, 'stream'), { 'pc.ram': join(dir, 'mem') }, join(dir, 'dev'), {
      chunkBytes: 2 * PAGE,
      onChunk: async (block, size, index, data) => { got.push([block, size, index, data === null ? null : data.toString('hex', 0, 1) + ':' + String(data.length)]) }
    })
    // Chunk 1 (pages 2, 3) completes first; chunk 0 holds page 1 and a zero page.
    expect(got).toEqual([['pc.ram', 4 * PAGE, 1, null], ['pc.ram', 4 * PAGE, 0, `01:${2 * PAGE}`]])
  })

  it('gives the same files whatever the read size, with records cut at every place', async () => {
    const recs: Rec[] = [{ block: 'pc.ram', offset: 0, data: page(1) }, { block: 'pc.rom', offset: 0, data: page(9) }, { block: 'pc.ram', offset: PAGE, zero: 0 }, { offset: 3 * PAGE, data: page(3) }, { offset: 2 * PAGE, data: page(2) }]
    const s = stream(recs).bytes
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-ramstream-'))
    dirs.push(dir)
    writeFileSync(join(dir, 'stream'), s)
    const split = async (readBytes?: number): Promise<[Buffer, Buffer]> => {
      await splitRamStream(join(dir, 'stream'), { 'pc.ram': join(dir, 'mem') }, join(dir, 'dev'), { chunkBytes: PAGE, readBytes })
      return [readFileSync(join(dir, 'mem')), readFileSync(join(dir, 'dev'))]
    }
    const [mem, dev] = await split()
    expect(mem.equals(Buffer.concat([page(1), page(0), page(2), page(3)]))).toBe(true)
    for (const readBytes of [1, 7, 4095, 4097, 4100, 5000, 8191]) {
      const [m, d] = await split(readBytes)
      expect(m.equals(mem)).toBe(true)
      expect(d.equals(dev)).toBe(true)
    }
  })

  it("fails with the sink's error (a full disk) once the chunks queued behind the parser reach it", async () => {
    const many: Rec[] = Array.from({ length: 4 }, (_, i) => ({ block: 'pc.ram', offset: i * PAGE, data: page(i + 1) }))
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-ramstream-'))
    dirs.push(dir)
    writeFileSync(join(dir, 'stream2'), stream(many).bytes)
    let calls = 0
    const failing = splitRamStream(join(dir, 'stream2'), { 'pc.ram': join(dir, 'mem2') }, join(dir, 'dev2'), {
      chunkBytes: PAGE,
      onChunk: async () => { calls++; throw new Error('no space left on device') }
    })
    await expect(failing).rejects.toThrow(/no space left/)
    expect(calls).toBe(1)
  })

  it('refuses a stream that lacks a page of the memory block', async () => {
    await expect(run(stream(good.slice(0, 4)).bytes).split).rejects.toThrow(/page at 8192 of RAM block pc.ram is not in the stream/)
  })

  it('refuses a page sent twice, a page outside the block, and flags it does not know', async () => {
    await expect(run(stream([...good, { block: 'pc.ram', offset: 0, data: page(2) }]).bytes).split).rejects.toThrow(/appears twice/)
    await expect(run(stream([...good, { block: 'pc.ram', offset: 4 * PAGE, data: page(2) }]).bytes).split).rejects.toThrow(/outside RAM block/)
    await expect(run(stream(good, { flags: 0x100 }).bytes).split).rejects.toThrow(/unsupported page record flags/)
  })

  it('refuses what is not a migration stream, and a truncated one', async () => {
    await expect(run(Buffer.from('not a stream at all')).split).rejects.toThrow(/not a QEMU migration stream/)
    const s = stream(good).bytes
    await expect(run(s.subarray(0, 200)).split).rejects.toThrow(/the stream ends/)
  })
})

describe('waitStreamComplete', () => {
  it('resolves once the file ends with a whole VM description, and times out on a cut one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmesh-ramstream-'))
    dirs.push(dir)
    const json = Buffer.from('{"page_size": 4096, "devices": []}')
    const whole = Buffer.concat([Buffer.from('stream bytes'), Buffer.from([0x00, 0x06]), be32(json.length), json])
    writeFileSync(join(dir, 'whole'), whole)
    await waitStreamComplete(join(dir, 'whole'), 1000)
    writeFileSync(join(dir, 'cut'), whole.subarray(0, whole.length - 3))
    await expect(waitStreamComplete(join(dir, 'cut'), 50)).rejects.toThrow(/did not end with QEMU's VM description/)
  })
})
