// Writing files so that they appear complete or not at all, and survive a crash once written.
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { dirname, join, basename } from 'node:path'

/** fsync a directory, making renames and unlinks inside it durable. */
export async function fsyncDir (dir: string): Promise<void> {
  const fd = await open(dir, 'r')
  try { await fd.sync() } finally { await fd.close() }
}

export function tempNameFor (path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
}

/** Write bytes to a temp file, fsync it, then write them into place by rename and fsync the dir. */
export async function writeFileDurably (path: string, bytes: Uint8Array): Promise<void> {
  const tmp = tempNameFor(path)
  const fd = await open(tmp, 'wx', 0o644)
  try {
    await fd.writeFile(bytes)
    await fd.sync()
  } catch (err) {
    await fd.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fd.close()
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fsyncDir(dirname(path))
}

/** Writes all of `data` at `position` (a positional write may write less than asked). */
export async function writeAll (fd: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let off = 0
  while (off < data.byteLength) {
    const { bytesWritten } = await fd.write(data, off, data.byteLength - off, position + off)
    off += bytesWritten
  }
}
