// Adverts: what each agent says about itself, signed with its own key so that any member can
// check an advert relayed by another (push-pull sync) without trusting the relay.
import { pb } from '@vmesh/wire'
import type { vmesh } from '@vmesh/wire'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromBytes } from './peer-ids.js'

export const ADVERT_VERSION = 1
const SIGNATURE_DOMAIN = new TextEncoder().encode('vmesh-advert:')

/** Bounds on what an advert may carry; anything beyond is rejected as malformed. */
export const advertLimits = {
  nameChars: 64,
  addrs: 16,
  addrBytes: 256,
  vms: 1024,
  images: 4096,
  imageIdBytes: 64,
  vmNameChars: 128,
  versionChars: 32,
  signatureBytes: 128,
  maxCores: 65536,
  maxMiB: 2 ** 31,
  maxVmCpus: 4096
}

export type Advert = vmesh.v1.Advert & vmesh.v1.Advert.$Shape

export interface VerifiedAdvert {
  peerId: PeerId
  advert: Advert
  signed: vmesh.v1.SignedAdvert.$Properties
}

function signedPayload (advertBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNATURE_DOMAIN.length + advertBytes.length)
  out.set(SIGNATURE_DOMAIN, 0)
  out.set(advertBytes, SIGNATURE_DOMAIN.length)
  return out
}

export async function signAdvert (key: PrivateKey, advert: vmesh.v1.Advert.$Properties): Promise<vmesh.v1.SignedAdvert.$Properties> {
  const bytes = pb.Advert.encode(advert).finish()
  const signature = await key.sign(signedPayload(bytes))
  return { advert: bytes, signature }
}

export class AdvertError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AdvertError'
  }
}

/**
 * Decodes, bounds-checks and verifies a signed advert. `expectedAuthor`, when given, is the peer
 * that published it on gossipsub: an agent may only advertise itself.
 */
export async function verifyAdvert (signed: vmesh.v1.SignedAdvert.$Properties, expectedAuthor?: PeerId): Promise<VerifiedAdvert> {
  const bytes = signed.advert
  const signature = signed.signature
  if (bytes == null || bytes.length === 0) throw new AdvertError('advert is empty')
  if (signature == null || signature.length === 0 || signature.length > advertLimits.signatureBytes) throw new AdvertError('advert signature missing or oversized')
  let advert: Advert
  try {
    advert = pb.Advert.decode(bytes)
  } catch (err) {
    throw new AdvertError(`advert does not decode: ${(err as Error).message}`)
  }
  checkAdvertBounds(advert)
  let peerId: PeerId
  try {
    peerId = peerIdFromBytes(advert.peerId)
  } catch (err) {
    throw new AdvertError(`advert has a malformed peer id: ${(err as Error).message}`)
  }
  if (expectedAuthor !== undefined && !expectedAuthor.equals(peerId)) {
    throw new AdvertError(`peer ${expectedAuthor.toString()} published an advert for ${peerId.toString()}`)
  }
  const publicKey = peerId.publicKey
  if (publicKey === undefined) throw new AdvertError('advert peer id does not embed a public key')
  const ok = await publicKey.verify(signedPayload(bytes), signature)
  if (!ok) throw new AdvertError(`advert signature does not match peer ${peerId.toString()}`)
  return { peerId, advert, signed: { advert: bytes, signature } }
}

function checkAdvertBounds (a: Advert): void {
  const fail = (what: string): never => { throw new AdvertError(`advert rejected: ${what}`) }
  if (a.version !== ADVERT_VERSION) fail(`unsupported version ${a.version}`)
  if (a.name.length === 0 || a.name.length > advertLimits.nameChars) fail(`name of ${a.name.length} characters`)
  if (a.addrs.length > advertLimits.addrs) fail(`${a.addrs.length} addresses`)
  for (const addr of a.addrs) {
    if (addr.length > advertLimits.addrBytes) fail('address too long')
    try { multiaddr(addr) } catch { fail('malformed address') }
  }
  if (!Number.isSafeInteger(a.incarnation) || !Number.isSafeInteger(a.seq)) fail('incarnation or seq out of range')
  if (a.vms.length > advertLimits.vms) fail(`${a.vms.length} VMs`)
  for (const vm of a.vms) {
    if (vm.name == null || vm.name.length === 0 || vm.name.length > advertLimits.vmNameChars) fail('VM name length')
    if ((vm.cpus ?? 0) > advertLimits.maxVmCpus || (vm.memMib ?? 0) > advertLimits.maxMiB) fail(`absurd VM size for ${vm.name ?? ''}`)
  }
  if (a.images.length > advertLimits.images) fail(`${a.images.length} images`)
  for (const id of a.images) if (id.length > advertLimits.imageIdBytes) fail('image id too long')
  if (a.agentVersion.length > advertLimits.versionChars) fail('agent version too long')
  const r = a.resources
  if (r == null) fail('no resources')
  else {
    const finite = (x: number | null | undefined): boolean => x == null || Number.isFinite(x)
    if ((r.cpuCores ?? 0) > advertLimits.maxCores) fail(`${r.cpuCores ?? 0} cores`)
    if (!finite(r.load1) || (r.load1 ?? 0) < 0 || (r.load1 ?? 0) > 1e6) fail('load out of range')
    if (!finite(r.ioUtil) || (r.ioUtil ?? 0) < 0 || (r.ioUtil ?? 0) > 1.5) fail('I/O utilisation out of range')
    if ((r.memFreeMib ?? 0) > (r.memTotalMib ?? 0)) fail('more memory free than total')
    if ((r.diskFreeMib ?? 0) > (r.diskTotalMib ?? 0)) fail('more disk free than total')
    if (r.accel != null && r.accel !== '' && r.accel !== 'kvm' && r.accel !== 'tcg') fail(`unknown accelerator ${r.accel}`)
  }
}
