// The generated codecs, configured once: 64-bit integers decode as plain numbers (exact up to
// 2^53, far beyond any byte count or incarnation vmesh uses) instead of Long objects.
import protobuf from 'protobufjs/minimal.js'
import { vmesh } from '../gen/vmesh.js'

protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long
protobuf.configure()

export const pb = vmesh.v1
export type { vmesh }
