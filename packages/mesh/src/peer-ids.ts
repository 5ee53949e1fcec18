// Peer ids travel as multihash bytes on the wire; these convert them and reject garbage.
import { peerIdFromMultihash } from '@libp2p/peer-id'
import * as Digest from 'multiformats/hashes/digest'
import type { PeerId } from '@libp2p/interface'

/** Longest peer id we accept: an identity multihash of an Ed25519 key is 38 bytes. */
export const MAX_PEER_ID_BYTES = 128

export function peerIdToBytes (id: PeerId): Uint8Array {
  return id.toMultihash().bytes
}

/** Parses peer id bytes from the network; throws a short message on anything malformed. */
export function peerIdFromBytes (bytes: Uint8Array): PeerId {
  if (bytes.length === 0 || bytes.length > MAX_PEER_ID_BYTES) throw new Error(`peer id of ${bytes.length} bytes`)
  return peerIdFromMultihash(Digest.decode(bytes))
}

/** Peer id bytes from a reply as text, for display and matching; undefined if absent or malformed. */
export function peerIdText (bytes: Uint8Array | null | undefined): string | undefined {
  try { return peerIdFromBytes(bytes ?? new Uint8Array()).toString() } catch { return undefined }
}
