// qcow2 overlays through qemu-img. Overlays are created with -u (unsafe): the backing file is not
// opened, because it may be the active layer of a running VM (locked) or a file materialised from
// the chunk store; the running chain is always given to QEMU explicitly (see qemu-args.ts).
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface ImageInfo {
  format: string
  virtualSize: number
  actualSize: number
  backingFile?: string
}

export class QemuImg {
  constructor(private readonly binary = 'qemu-img') {}

  async info(path: string): Promise<ImageInfo> {
    try {
      const { stdout } = await run(this.binary, ['info', '--output=json', '-U', path])
      const j = JSON.parse(stdout) as Record<string, unknown>
      const info: ImageInfo = {
        format: String(j.format),
        virtualSize: Number(j['virtual-size']),
        actualSize: Number(j['actual-size'] ?? 0)
      }
      if (typeof j['backing-filename'] === 'string') info.backingFile = j['backing-filename']
      return info
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`cannot read image ${path}: ${(e.stderr || e.message).trim()}`)
    }
  }

  /** Integrity check of a qcow2 image; throws with qemu-img's words when it is corrupt. */
  async check(path: string): Promise<void> {
    try {
      await run(this.binary, ['check', '-U', '-q', path])
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string }
      throw new Error(`image ${path} is corrupt: ${(e.stderr || e.stdout || e.message).trim()}`)
    }
  }

  async createOverlay(path: string, backing: string, backingFormat: string, sizeBytes: number): Promise<void> {
    await this.create(['-f', 'qcow2', '-u', '-b', backing, '-F', backingFormat, path, String(sizeBytes)])
  }

  async createBlank(path: string, sizeBytes: number): Promise<void> {
    await this.create(['-f', 'qcow2', path, String(sizeBytes)])
  }

  private async create(args: string[]): Promise<void> {
    try {
      await run(this.binary, ['create', '-q', ...args])
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`qemu-img create failed: ${(e.stderr || e.message).trim()}`)
    }
  }

  /** Bytes whose data lives in this image itself, not in its backing chain. */
  async ownDataBytes(path: string): Promise<number> {
    const { stdout } = await run(this.binary, ['map', '--output=json', '-U', path])
    const extents = JSON.parse(stdout) as Array<{ length: number; depth: number; data: boolean }>
    return extents.filter((e) => e.depth === 0 && e.data).reduce((a, e) => a + e.length, 0)
  }
}
