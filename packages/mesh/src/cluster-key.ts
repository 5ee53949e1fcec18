// The cluster key is a libp2p pre-shared key (the "swarm.key" format of pnet): every connection is
// first XSalsa20-encrypted with it, so a host without the key cannot even complete a handshake.
// Noise then encrypts again with per-connection keys: two layers, data and channel.
import { readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'

const HEADER = '/key/swarm/psk/1.0.0/'
const ENCODING = '/base16/'
const KEY_BYTES = 32
const MAX_FILE_BYTES = 4096

export function generateClusterKey (): string {
  return `${HEADER}\n${ENCODING}\n${randomBytes(KEY_BYTES).toString('hex')}\n`
}

/** Parses and validates a cluster key; returns the bytes pnet expects. */
export function parseClusterKey (text: string): Uint8Array {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0)
  if (lines[0] !== HEADER || lines[1] !== ENCODING || lines.length !== 3) {
    throw new Error(`not a vmesh cluster key: expected "${HEADER}", "${ENCODING}" and ${KEY_BYTES * 2} hex digits; make one with "vmesh keygen > cluster.key"`)
  }
  const hex = lines[2] as string
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== KEY_BYTES * 2) {
    throw new Error(`cluster key must hold ${KEY_BYTES * 2} hex digits, found ${hex.length} characters`)
  }
  return new TextEncoder().encode(`${HEADER}\n${ENCODING}\n${hex.toLowerCase()}`)
}

export async function loadClusterKey (path: string): Promise<Uint8Array> {
  let text: string
  try {
    const buf = await readFile(path)
    if (buf.length > MAX_FILE_BYTES) throw new Error(`cluster key file ${path} is ${buf.length} bytes; a key is under 200`)
    text = buf.toString('utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new Error(`cluster key file ${path} does not exist; create one with "vmesh keygen > ${path}" and copy it to every host`)
    if (code === 'EACCES') throw new Error(`cannot read cluster key file ${path}: permission denied`)
    throw err
  }
  try {
    return parseClusterKey(text)
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`)
  }
}
