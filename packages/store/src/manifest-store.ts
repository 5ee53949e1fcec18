// Saved manifests, one file per manifest: <dir>/manifests/<id>. A saved manifest is what keeps
// its chunks alive through GC, so saves are durable before they resolve and loads are verified.
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { assertHash, isHash, sha256, type Hash } from './hash.js'
import { decodeManifest, encodeManifest, type Manifest } from './manifest.js'
import { ManifestError, ManifestNotFoundError } from './errors.js'
import { fsyncDir, writeFileDurably } from './durable-file.js'

export class ManifestStore {
  /** <dir>/manifests */
  readonly manifestsDir: string

  private constructor (readonly dir: string) {
    this.manifestsDir = join(dir, 'manifests')
  }

  static async open (opts: { dir: string }): Promise<ManifestStore> {
    const s = new ManifestStore(opts.dir)
    await mkdir(s.manifestsDir, { recursive: true })
    // temp files of saves cut short by a crash (never visible under an id)
    for (const n of await readdir(s.manifestsDir)) if (n.startsWith('.') && n.endsWith('.tmp')) await unlink(join(s.manifestsDir, n)).catch(() => {})
    return s
  }

  /** Encode, store durably, return the id. Saving the same manifest twice is harmless. */
  async save (manifest: Manifest): Promise<Hash> {
    return await this.saveEncoded(encodeManifest(manifest))
  }

  /** Store manifest bytes received from a peer, after checking them. Returns the id. */
  async saveEncoded (bytes: Uint8Array, expectedId?: Hash): Promise<Hash> {
    decodeManifest(bytes)
    const id = sha256(bytes)
    if (expectedId !== undefined && expectedId !== id) throw new ManifestError(`manifest bytes hash to ${id.slice(0, 16)}…, expected ${expectedId.slice(0, 16)}…`)
    await writeFileDurably(join(this.manifestsDir, id), bytes)
    return id
  }

  /** One stat, not a listing: a seed asks this for every chunk link a push opens. */
  async has (id: Hash): Promise<boolean> {
    if (!isHash(id)) return false
    try {
      return (await stat(join(this.manifestsDir, id))).isFile()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
  }

  /** The encoded bytes, verified against the id. */
  async loadEncoded (id: Hash): Promise<Uint8Array> {
    assertHash(id, 'manifest id')
    let bytes: Buffer
    try {
      bytes = await readFile(join(this.manifestsDir, id))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ManifestNotFoundError(id, this.manifestsDir)
      throw err
    }
    if (sha256(bytes) !== id) throw new ManifestError(`manifest file ${join(this.manifestsDir, id)} is corrupt (its bytes do not hash to its name); delete it and fetch it again`)
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  async load (id: Hash): Promise<Manifest> {
    return decodeManifest(await this.loadEncoded(id))
  }

  /** Ids of every saved manifest. */
  async list (): Promise<Hash[]> {
    return (await readdir(this.manifestsDir)).filter(isHash).sort()
  }

  /** Remove a manifest (its chunks become collectable by gc). Returns whether it existed. */
  async delete (id: Hash): Promise<boolean> {
    assertHash(id, 'manifest id')
    try {
      await unlink(join(this.manifestsDir, id))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
    await fsyncDir(this.manifestsDir)
    return true
  }
}
