// Local image names: name -> manifest id, in <dir>/images.json (rewritten durably on change).
// Used by `vmesh image add/ls/export`. The manifest itself lives in the ManifestStore.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { assertHash, isHash, type Hash } from './hash.js'
import { writeFileDurably } from './durable-file.js'
import { MAX_NAME_LENGTH } from './config.js'

export interface ImageEntry { name: string, id: Hash, addedAtMs: number }

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@+-]*$/

export class ImageCatalogue {
  private constructor (readonly path: string, private entries: ImageEntry[]) {}

  static async open (opts: { dir: string }): Promise<ImageCatalogue> {
    const path = join(opts.dir, 'images.json')
    let entries: ImageEntry[] = []
    try {
      const parsed: unknown = JSON.parse(await readFile(path, 'utf8'))
      if (!Array.isArray(parsed)) throw new Error('not a list')
      entries = parsed.filter((e): e is ImageEntry =>
        typeof e === 'object' && e !== null && typeof e.name === 'string' && isHash(e.id) && typeof e.addedAtMs === 'number')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`image catalogue ${path} is unreadable (${(err as Error).message}); fix or delete it`)
    }
    return new ImageCatalogue(path, entries)
  }

  static validName (name: string): boolean {
    return name.length <= MAX_NAME_LENGTH && NAME_RE.test(name) && !isHash(name)
  }

  /** Name an image (replacing what the name pointed to before). */
  async add (name: string, id: Hash): Promise<void> {
    if (!ImageCatalogue.validName(name)) throw new Error(`image name ${JSON.stringify(name)} is not allowed: use letters, digits and . _ : @ + -, not a 64-hex id`)
    assertHash(id, 'manifest id')
    this.entries = this.entries.filter((e) => e.name !== name)
    this.entries.push({ name, id, addedAtMs: Date.now() })
    await this.persist()
  }

  async remove (name: string): Promise<boolean> {
    const before = this.entries.length
    this.entries = this.entries.filter((e) => e.name !== name)
    if (this.entries.length === before) return false
    await this.persist()
    return true
  }

  /** A name, a full id, or an unambiguous id prefix (at least 8 hex characters) -> id. */
  resolve (nameOrId: string): Hash | undefined {
    const byName = this.entries.find((e) => e.name === nameOrId)
    if (byName !== undefined) return byName.id
    if (isHash(nameOrId)) return nameOrId
    if (/^[0-9a-f]{8,63}$/.test(nameOrId)) {
      const ids = [...new Set(this.entries.map((e) => e.id).filter((id) => id.startsWith(nameOrId)))]
      if (ids.length === 1) return ids[0]
    }
    return undefined
  }

  list (): ImageEntry[] {
    return [...this.entries].sort((a, b) => a.name.localeCompare(b.name))
  }

  private async persist (): Promise<void> {
    await writeFileDurably(this.path, Buffer.from(JSON.stringify(this.entries, null, 2) + '\n'))
  }
}
