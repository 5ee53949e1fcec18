// The demo guest built by scripts/build-guest: kernel, busybox initramfs and a blank data disk.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface GuestImage {
  /** Base disk image (qcow2 or raw); used read-only, VMs write to overlays. */
  disk: string
  kernel?: string
  initrd?: string
  append?: string
}

/** Repository root, from this file's place (packages/hypervisor/{src,dist}/guest-image.*). */
export function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
}

export function defaultGuestDir(): string {
  return process.env.VMESH_GUEST_OUT ?? join(repoRoot(), 'guest', 'out')
}

/** Returns the demo guest, running scripts/build-guest first when it is missing. */
export async function guestImage(opts: { outDir?: string; build?: boolean; log?: (line: string) => void } = {}): Promise<GuestImage> {
  const outDir = opts.outDir ?? defaultGuestDir()
  const manifest = join(outDir, 'guest.json')
  const load = async (): Promise<GuestImage> => {
    const j = JSON.parse(await readFile(manifest, 'utf8')) as Record<string, string>
    return { disk: j.disk!, kernel: j.kernel!, initrd: j.initrd!, append: j.append! }
  }
  try {
    const image = await load()
    // Reuse the build while the guest sources in this checkout are unchanged (the script checks the same).
    if (opts.build === false || (await sourceHash()) === (await manifestHash(manifest))) return image
  } catch {
    if (opts.build === false) throw new Error(`demo guest not built (${manifest} missing); run scripts/build-guest`)
  }
  opts.log?.(`building demo guest into ${outDir} (scripts/build-guest)`)
  await new Promise<void>((res, rej) => {
    execFile(join(repoRoot(), 'scripts', 'build-guest'), [], { env: { ...process.env, VMESH_GUEST_OUT: outDir }, timeout: 15 * 60_000 }, (err, _o, stderr) =>
      err ? rej(new Error(`scripts/build-guest failed: ${String(stderr).trim().split('\n').slice(-3).join('; ') || err.message}`)) : res()
    )
  })
  return load()
}

/** First 16 hex digits of sha256(guest/init + scripts/build-guest), as scripts/build-guest computes it. */
async function sourceHash(): Promise<string | undefined> {
  try {
    const init = await readFile(join(repoRoot(), 'guest', 'init'))
    const script = await readFile(join(repoRoot(), 'scripts', 'build-guest'))
    return createHash('sha256').update(init).update(script).digest('hex').slice(0, 16)
  } catch {
    return undefined
  }
}

async function manifestHash(manifest: string): Promise<string | undefined> {
  const j = JSON.parse(await readFile(manifest, 'utf8')) as Record<string, string>
  return j.sourceHash
}
