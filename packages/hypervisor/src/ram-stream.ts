// Splits a QEMU background-snapshot migration stream (QEMU 7.2 format) into what a clone needs:
// the guest's RAM blocks as plain files (the snapshot's memory layers) and a device-state stream
// without those blocks' pages. This replaces a "relay" QEMU that loaded the whole stream only to
// write its RAM out again (0.5-0.6 s for 256 MiB on ext4, most of a snapshot's time).
//
// The stream, as written by a background snapshot with no compression, xbzrle or multifd:
//   be32 0x5145564d "QEVM", be32 3
//   0x07 configuration: be32 len, machine type (anything else here is refused)
//   0x01 START  be32 id, u8 len "ram", be32 instance, be32 version, RAM setup data, footer
//   0x02 PART / 0x03 END  be32 id, RAM page records, footer      (repeated)
//   0x04 FULL device sections ..., 0x00 EOF, optional 0x06 vm description    (copied verbatim)
// RAM data is a run of records: be64 (offset | flags), then u8 len + block name unless flag
// CONTINUE (same block as the previous record); ZERO: u8 fill byte; PAGE: 4096 bytes; MEM_SIZE
// (setup): the block list; EOS ends the section's data. A footer is 0x7e + be32 section id.
//
// Pages of the blocks named in `memoryFiles` go to those files (zero pages stay holes), a whole
// chunk at a time, and each chunk also goes to `onChunk` (the agent hashes and stores it there:
// the snapshot's import happens during the split); every page of those blocks must appear
// exactly once, or the split fails. Pages of other RAM blocks
// (ROMs, ACPI tables) stay in the device-state stream, in one PART section. A clone loads that
// stream with x-ignore-shared off (the source wrote the setup without it), and its RAM blocks
// map the memory files. Anything unexpected throws: the caller falls back to the relay.
import { open, type FileHandle } from 'node:fs/promises'

const PAGE = 4096
const FLAG_ZERO = 0x02
const FLAG_MEM_SIZE = 0x04
const FLAG_PAGE = 0x08
const FLAG_EOS = 0x10
const FLAG_CONTINUE = 0x20
const KNOWN_FLAGS = FLAG_ZERO | FLAG_MEM_SIZE | FLAG_PAGE | FLAG_EOS | FLAG_CONTINUE
const SECTION_START = 0x01
const SECTION_PART = 0x02
const SECTION_END = 0x03
const CONFIGURATION = 0x07
const FOOTER = 0x7e
/** The longest page record: offset word, a block name (u8 length + up to 255 bytes), a page. */
const MAX_PAGE_RECORD = 8 + 1 + 255 + PAGE
/** Room before each piece read, for the part of a record left over from the piece before. */
const HEADROOM = MAX_PAGE_RECORD
/** Complete chunks waiting to be written and handed to the sink while parsing goes on. */
const MAX_QUEUED_CHUNKS = 8
/** Reading a stream QEMU still writes: how long to wait at its end for more. */
const GROWING_POLL_MS = 3

export class RamStreamError extends Error {}

export interface RamStreamSplit {
  /** Pages written to the memory files, and zero pages left as holes. */
  dataPages: number
  zeroPages: number
  /** Pages of other RAM blocks kept in the device state. */
  keptPages: number
  deviceStateBytes: number
}

/**
 * Waits until the stream file holds the whole stream. QEMU reports the migration completed when
 * it has handed the last bytes to the `exec:cat > file` writer, which may not have written them
 * yet. The stream ends with QEMU's VM description (0x06, be32 length, JSON), so the file is whole
 * once it ends with one whose length matches.
 */
export async function waitStreamComplete (path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const marker = Buffer.from('{"page_size"')
  for (;;) {
    const fd = await open(path, 'r')
    try {
      const size = (await fd.stat()).size
      const len = Math.min(size, 4 << 20)
      const tail = Buffer.alloc(len)
      await fd.read(tail, 0, len, size - len)
      const at = tail.lastIndexOf(marker)
      if (at >= 5 && tail[at - 5] === 0x06 && tail.readUInt32BE(at - 4) === len - at) return
    } finally {
      await fd.close()
    }
    if (Date.now() > deadline) throw new RamStreamError(`the snapshot stream ${path} did not end with QEMU's VM description within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * Buffered reads of a file with a cursor; fails clearly at a truncated stream. The next piece of
 * the file is read while the current one is parsed, and the *Sync reads take bytes already
 * buffered: the page loop fills the buffer once per record and parses it without an await per
 * field. With the chunks written behind the parser, a 256 MiB stream splits in 250-360 ms
 * instead of 380-550 ms (tmpfs); reading ahead and writing behind did most of that.
 */
class Reader {
  private buf: Buffer = Buffer.alloc(0)
  private pos = 0
  private fileOffset = 0
  private eof = false
  /** The next piece of the file, read while the current one is parsed. */
  private ahead: Promise<Buffer> | undefined

  /**
   * @param writing while true, the file may still grow: a read at its end waits for more bytes
   *   (QEMU is still writing the stream) instead of ending it
   */
  constructor (private readonly fd: FileHandle, private readonly readSize = 4 << 20, private readonly writing: () => boolean = () => false) {}

  get offset (): number {
    return this.fileOffset - this.available
  }

  /** Bytes buffered and not read yet. */
  get available (): number {
    return this.buf.length - this.pos
  }

  /** Buffers at least n bytes, or what is left of the file if it is shorter. */
  async fill (n: number): Promise<void> {
    while (this.available < n && !this.eof) {
      const piece = await this.nextPiece()
      if (piece.length === 0) { this.eof = true; break }
      const kept = this.available
      if (kept === 0) {
        this.buf = piece
      } else if (kept <= HEADROOM) {
        // The record cut by the piece's edge goes in the headroom just before the new bytes.
        const joined = Buffer.from(piece.buffer, piece.byteOffset - kept, kept + piece.length)
        this.buf.copy(joined, 0, this.pos)
        this.buf = joined
      } else {
        this.buf = Buffer.concat([this.buf.subarray(this.pos), piece])
      }
      this.pos = 0
    }
  }

  /** The next piece of the file (empty at its end), and the read of the one after it started. */
  private async nextPiece (): Promise<Buffer> {
    const piece = await (this.ahead ?? this.readPiece(this.fileOffset))
    this.fileOffset += piece.length
    this.ahead = piece.length > 0 ? this.readPiece(this.fileOffset) : undefined
    // Its failure surfaces when it is awaited; until then it must not count as unhandled.
    this.ahead?.catch(() => {})
    return piece
  }

  private async readPiece (at: number): Promise<Buffer> {
    const b = Buffer.allocUnsafe(HEADROOM + this.readSize)
    for (;;) {
      // Asked before the read: once the writer is done, a read that finds nothing is the end.
      const writing = this.writing()
      const { bytesRead } = await this.fd.read(b, HEADROOM, this.readSize, at)
      if (bytesRead > 0 || !writing) return b.subarray(HEADROOM, HEADROOM + bytesRead)
      await new Promise((resolve) => setTimeout(resolve, GROWING_POLL_MS))
    }
  }

  async need (n: number): Promise<void> {
    await this.fill(n)
    if (this.available < n) this.truncated()
  }

  private truncated (): never {
    throw new RamStreamError(`the stream ends at byte ${this.offset + this.available}, inside a record`)
  }

  /** Advances over n buffered bytes and returns where they start. */
  private take (n: number): number {
    if (this.available < n) this.truncated()
    const at = this.pos
    this.pos += n
    return at
  }

  u8Sync (): number { return this.buf[this.take(1)] as number }
  u32Sync (): number { return this.buf.readUInt32BE(this.take(4)) }
  u64Sync (): number {
    const at = this.take(8)
    const v = this.buf.readUInt32BE(at) * 2 ** 32 + this.buf.readUInt32BE(at + 4)
    if (v > Number.MAX_SAFE_INTEGER) throw new RamStreamError(`a record offset ${v} is out of range`)
    return v
  }

  /** The next n bytes (valid until the next fill). */
  bytesSync (n: number): Buffer { const at = this.take(n); return this.buf.subarray(at, at + n) }
  nameSync (): string { return this.bytesSync(this.u8Sync()).toString('latin1') }

  async u8 (): Promise<number> { await this.need(1); return this.u8Sync() }
  async u32 (): Promise<number> { await this.need(4); return this.u32Sync() }
  async u64 (): Promise<number> { await this.need(8); return this.u64Sync() }
  async bytes (n: number): Promise<Buffer> { await this.need(n); return this.bytesSync(n) }
  async name (): Promise<string> { return (await this.bytes(await this.u8())).toString('latin1') }
  async peek (): Promise<number | undefined> {
    await this.fill(1)
    return this.available > 0 ? this.buf[this.pos] : undefined
  }

  /** Everything not read yet, in pieces. */
  async * rest (): AsyncGenerator<Buffer> {
    if (this.available > 0) yield this.buf.subarray(this.pos)
    this.pos = this.buf.length
    for (;;) {
      const piece = await this.nextPiece()
      if (piece.length === 0) return
      yield piece
    }
  }

  /** Waits for a read still under way, so the file can be closed. */
  async settle (): Promise<void> {
    await this.ahead?.catch(() => {})
  }
}

/**
 * Called with each chunk of a memory block as soon as all its pages were read (data null for an
 * all-zero chunk), in any order; the split waits for it (backpressure).
 */
export type MemoryChunkSink = (block: string, blockSize: number, index: number, data: Buffer | null) => Promise<void>

/**
 * One memory file being filled, chunk by chunk: a chunk's pages are gathered (pages come mostly
 * in order, and pages the guest wrote during the snapshot come early), and a complete chunk is
 * written at once and handed to the sink. All-zero chunks stay holes.
 */
class MemoryFile {
  private readonly partial = new Map<number, { buf: Buffer | undefined, pages: number }>()
  /**
   * Complete chunks the parser has not waited for yet (oldest first). It waits for each one
   * page() returns, so every chunk still being written is here.
   */
  private readonly queued: Array<Promise<void>> = []
  /** The sink takes chunks one after another, in order (its store writer is not reentrant). */
  private sinkTail: Promise<void> = Promise.resolve()
  private failure: unknown
  readonly seen: Uint8Array

  constructor (readonly fd: FileHandle, readonly name: string, readonly size: number, private readonly chunkBytes: number, private readonly sink?: MemoryChunkSink) {
    this.seen = new Uint8Array(Math.ceil(size / PAGE))
  }

  mark (offset: number): void {
    if (offset % PAGE !== 0 || offset + PAGE > this.size) throw new RamStreamError(`page at ${offset} is outside RAM block ${this.name} (${this.size} bytes)`)
    const i = offset / PAGE
    if (this.seen[i] === 1) throw new RamStreamError(`page at ${offset} of ${this.name} appears twice`)
    this.seen[i] = 1
  }

  /**
   * A page: its bytes, or undefined for a zero page. A page that completes a chunk starts the
   * chunk's write and queues it for the sink, behind the parser. Returns a promise only when the
   * queue is full (the oldest chunk's), so most pages cost no await.
   */
  page (offset: number, data: Buffer | undefined): Promise<void> | undefined {
    this.mark(offset)
    const c = Math.floor(offset / this.chunkBytes)
    const start = c * this.chunkBytes
    const length = Math.min(this.chunkBytes, this.size - start)
    let entry = this.partial.get(c)
    if (entry === undefined) { entry = { buf: undefined, pages: 0 }; this.partial.set(c, entry) }
    if (data !== undefined) {
      entry.buf ??= Buffer.alloc(length)
      data.copy(entry.buf, offset - start)
    }
    if (++entry.pages < Math.ceil(length / PAGE)) return undefined
    this.partial.delete(c)
    const written = this.completeChunk(c, start, entry.buf)
    // After a failure the later chunks are skipped, and each wait on the queue throws it.
    written.catch((err: unknown) => { this.failure ??= err })
    this.queued.push(written)
    return this.queued.length > MAX_QUEUED_CHUNKS ? this.queued.shift() : undefined
  }

  /** Waits for every complete chunk to be written and taken by the sink; throws their error. */
  async drain (): Promise<void> {
    await Promise.allSettled(this.queued)
    if (this.failure !== undefined) throw this.failure
  }

  /**
   * Chunks are written to the file side by side (each write waits its turn in libuv's thread
   * pool, which on a busy host takes tens of ms: one at a time, a 256 MiB guest's split took
   * seconds), while the sink takes them in order.
   */
  private async completeChunk (index: number, start: number, buf: Buffer | undefined): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    const sunk = this.sinkTail.then(async () => {
      if (this.failure !== undefined) throw this.failure
      try {
        await this.sink?.(this.name, this.size, index, buf ?? null)
      } catch (err) {
        this.failure ??= err // at once: the next chunk's turn comes before this chunk's promise settles
        throw err
      }
    })
    this.sinkTail = sunk.catch(() => {})
    await Promise.all([buf !== undefined ? writeFully(this.fd, buf, start) : undefined, sunk])
  }

  complete (): void {
    const missing = this.seen.indexOf(0)
    if (missing >= 0) throw new RamStreamError(`page at ${missing * PAGE} of RAM block ${this.name} is not in the stream`)
  }
}

/**
 * Splits `streamPath` into `memoryFiles` (RAM block name -> file, created at the block's size)
 * and `deviceStatePath`.
 */
export async function splitRamStream (streamPath: string, memoryFiles: Record<string, string>, deviceStatePath: string,
  opts: {
    chunkBytes?: number
    onChunk?: MemoryChunkSink
    /** bytes per read (tests cut records with small ones) */
    readBytes?: number
    /** true while QEMU may still be writing the stream: the split follows it as it grows */
    writing?: () => boolean
  } = {}): Promise<RamStreamSplit> {
  const chunkBytes = opts.chunkBytes ?? 1 << 20
  if (chunkBytes % PAGE !== 0 || chunkBytes <= 0) throw new RangeError(`chunk size ${chunkBytes} is not a multiple of ${PAGE}`)
  const input = await open(streamPath, 'r')
  const out = await open(deviceStatePath, 'w')
  const mems = new Map<string, MemoryFile>()
  const result: RamStreamSplit = { dataPages: 0, zeroPages: 0, keptPages: 0, deviceStateBytes: 0 }
  const emit = async (b: Buffer): Promise<void> => {
    await writeFully(out, b, null)
    result.deviceStateBytes += b.length
  }
  let reader: Reader | undefined
  try {
    const r = reader = new Reader(input, opts.readBytes, opts.writing)
    // Header and configuration, copied as they are.
    if (await r.u32() !== 0x5145564d || await r.u32() !== 3) throw new RamStreamError('not a QEMU migration stream (version 3)')
    if (await r.u8() !== CONFIGURATION) throw new RamStreamError('the stream has no configuration section')
    const machine = await r.bytes(await r.u32())
    const head = Buffer.alloc(13 + machine.length)
    head.writeUInt32BE(0x5145564d, 0); head.writeUInt32BE(3, 4); head[8] = CONFIGURATION; head.writeUInt32BE(machine.length, 9); machine.copy(head, 13)
    await emit(head)

    // The RAM setup section, copied, and the block sizes it lists.
    if (await r.peek() !== SECTION_START) throw new RamStreamError('expected the RAM setup section after the configuration')
    const parts: Buffer[] = []
    const take = async (n: number): Promise<Buffer> => { const b = Buffer.from(await r.bytes(n)); parts.push(b); return b }
    await take(1)
    const sectionId = (await take(4)).readUInt32BE(0)
    const idLen = (await take(1))[0] as number
    if ((await take(idLen)).toString('latin1') !== 'ram') throw new RamStreamError('the first section is not "ram"')
    await take(8) // instance id, version id
    const blockSizes = new Map<string, number>()
    for (;;) {
      const word = Number((await take(8)).readBigUInt64BE(0))
      const flags = word % PAGE
      if (flags & FLAG_EOS) break
      if (!(flags & FLAG_MEM_SIZE)) throw new RamStreamError(`unexpected record (flags 0x${flags.toString(16)}) in the RAM setup`)
      let total = word - flags
      while (total > 0) {
        const n = (await take(1))[0] as number
        const name = (await take(n)).toString('latin1')
        const size = Number((await take(8)).readBigUInt64BE(0))
        blockSizes.set(name, size)
        total -= size
      }
    }
    if ((await take(1))[0] !== FOOTER || (await take(4)).readUInt32BE(0) !== sectionId) throw new RamStreamError('the RAM setup section has no footer')
    await emit(Buffer.concat(parts))

    for (const [block, path] of Object.entries(memoryFiles)) {
      const size = blockSizes.get(block)
      if (size === undefined) throw new RamStreamError(`the stream has no RAM block ${block}`)
      const fd = await open(path, 'w')
      mems.set(block, new MemoryFile(fd, block, size, chunkBytes, opts.onChunk))
      await fd.truncate(size)
    }

    // Page sections: pages of the memory blocks to their files, the others kept.
    const kept: Buffer[] = []
    let block: string | undefined
    while ((await r.peek()) === SECTION_PART || (await r.peek()) === SECTION_END) {
      await r.u8()
      if (await r.u32() !== sectionId) throw new RamStreamError('a page section of another section id')
      for (;;) {
        if (r.available < MAX_PAGE_RECORD) await r.fill(MAX_PAGE_RECORD)
        const word = r.u64Sync()
        const flags = word % PAGE
        const offset = word - flags
        if (flags & ~KNOWN_FLAGS) throw new RamStreamError(`unsupported page record flags 0x${flags.toString(16)} (compression, xbzrle or multifd?)`)
        if (flags & FLAG_EOS) break
        if (!(flags & FLAG_CONTINUE)) block = r.nameSync()
        if (block === undefined || !blockSizes.has(block)) throw new RamStreamError(`a page of unknown RAM block ${block ?? '(none)'}`)
        const mem = mems.get(block)
        if (flags & FLAG_ZERO) {
          const fill = r.u8Sync()
          if (mem !== undefined) {
            if (fill !== 0) throw new RamStreamError('a filled page with a non-zero byte')
            const written = mem.page(offset, undefined)
            if (written !== undefined) await written
            result.zeroPages++
          } else {
            kept.push(pageRecord(block, offset, FLAG_ZERO, Buffer.from([fill])))
            result.keptPages++
          }
        } else if (flags & FLAG_PAGE) {
          const data = r.bytesSync(PAGE)
          if (mem !== undefined) {
            const written = mem.page(offset, data)
            if (written !== undefined) await written
            result.dataPages++
          } else {
            kept.push(pageRecord(block, offset, FLAG_PAGE, Buffer.from(data)))
            result.keptPages++
          }
        } else {
          throw new RamStreamError(`a page record with flags 0x${flags.toString(16)}`)
        }
      }
      if (await r.u8() !== FOOTER || await r.u32() !== sectionId) throw new RamStreamError('a page section has no footer')
    }
    for (const mem of mems.values()) { await mem.drain(); mem.complete() }
    // The other blocks' pages, in one section with explicit block names.
    const section = Buffer.alloc(5)
    section[0] = SECTION_PART
    section.writeUInt32BE(sectionId, 1)
    const eos = Buffer.alloc(8)
    eos.writeBigUInt64BE(BigInt(FLAG_EOS))
    const footer = Buffer.alloc(5)
    footer[0] = FOOTER
    footer.writeUInt32BE(sectionId, 1)
    await emit(Buffer.concat([section, ...kept, eos, footer]))
    // Device sections, EOF and the description: verbatim.
    for await (const piece of r.rest()) await emit(piece)
    await out.sync()
    return result
  } finally {
    await reader?.settle()
    await input.close()
    await out.close()
    for (const m of mems.values()) {
      await m.drain().catch(() => {})
      await m.fd.close().catch(() => {})
    }
  }
}

/** Writes all of `b` at `position` (null: at the file's current offset); a write may write less. */
async function writeFully (fd: FileHandle, b: Buffer, position: number | null): Promise<void> {
  let done = 0
  while (done < b.length) done += (await fd.write(b, done, b.length - done, position === null ? null : position + done)).bytesWritten
}

function pageRecord (block: string, offset: number, flag: number, body: Buffer): Buffer {
  const name = Buffer.from(block, 'latin1')
  const head = Buffer.alloc(9 + name.length)
  head.writeBigUInt64BE(BigInt(offset + flag))
  head[8] = name.length
  name.copy(head, 9)
  return Buffer.concat([head, body])
}
