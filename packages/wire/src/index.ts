// @vmesh/wire: the codecs generated from proto/ and the framing every vmesh protocol uses.
export { pb } from './codecs.js'
export type { vmesh } from './codecs.js'
export { encodeFrame, FrameDecoder, FrameTooLargeError, MalformedFrameError } from './framing.js'
export { socketChannel, streamChannel, ChannelTimeoutError } from './channel.js'
export type { MessageChannel } from './channel.js'
