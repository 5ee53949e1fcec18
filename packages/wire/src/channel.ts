// A MessageChannel carries length-prefixed frames in both directions. The control API runs the
// same code over a unix socket and over a libp2p stream, so both are adapted to this interface.
import type { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { FrameDecoder, encodeFrame } from './framing.js'

export interface MessageChannel {
  /** Resolves with the next frame, or undefined when the peer closed cleanly. */
  recv(timeoutMs?: number): Promise<Uint8Array | undefined>
  send(frame: Uint8Array): Promise<void>
  /** Finish writing; the peer's recv() then returns undefined. */
  close(): Promise<void>
  /** Tear down at once, for errors. */
  abort(reason: Error): void
}

export class ChannelTimeoutError extends Error {
  constructor (ms: number) {
    super(`no message within ${ms} ms`)
    this.name = 'ChannelTimeoutError'
  }
}

function withTimeout<T> (p: Promise<T>, ms: number | undefined, onTimeout: () => void): Promise<T> {
  if (ms === undefined) return p
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => { onTimeout(); reject(new ChannelTimeoutError(ms)) }, ms)
    p.then((v) => { clearTimeout(t); resolve(v) }, (e) => { clearTimeout(t); reject(e) })
  })
}

/** Frames over a node socket (the unix control socket). */
export function socketChannel (socket: Socket, maxFrameBytes: number): MessageChannel {
  const decoder = new FrameDecoder(maxFrameBytes)
  const ready: Uint8Array[] = []
  let ended = false
  let failure: Error | undefined
  let waiter: (() => void) | undefined
  const wake = (): void => { const w = waiter; waiter = undefined; w?.() }

  socket.on('data', (chunk: Buffer) => {
    try {
      for (const frame of decoder.push(chunk)) ready.push(frame)
    } catch (err) {
      failure = err as Error
      socket.destroy()
    }
    wake()
  })
  socket.on('end', () => { ended = true; wake() })
  socket.on('close', () => { ended = true; wake() })
  socket.on('error', (err) => { failure ??= err; wake() })

  return {
    async recv (timeoutMs) {
      const next = async (): Promise<Uint8Array | undefined> => {
        for (;;) {
          const frame = ready.shift()
          if (frame !== undefined) return frame
          if (failure !== undefined) throw failure
          if (ended) {
            if (decoder.pendingBytes > 0) throw new Error('connection closed in the middle of a frame')
            return undefined
          }
          await new Promise<void>((resolve) => { waiter = resolve })
        }
      }
      return await withTimeout(next(), timeoutMs, () => socket.destroy())
    },
    async send (frame) {
      if (socket.destroyed) throw new Error('connection closed')
      const ok = socket.write(encodeFrame(frame))
      if (!ok) {
        await new Promise<void>((resolve, reject) => {
          const onDrain = (): void => { socket.off('close', onClose); resolve() }
          const onClose = (): void => { socket.off('drain', onDrain); reject(new Error('connection closed')) }
          socket.once('drain', onDrain)
          socket.once('close', onClose)
        })
      }
    },
    async close () {
      await new Promise<void>((resolve) => socket.end(resolve))
    },
    abort () {
      socket.destroy()
    }
  }
}

/** Frames over a libp2p stream. */
export function streamChannel (stream: Stream, maxFrameBytes: number): MessageChannel {
  const lp = lpStream(stream, { maxDataLength: maxFrameBytes })
  return {
    async recv (timeoutMs) {
      try {
        const list = await withTimeout(lp.read(), timeoutMs, () => stream.abort(new ChannelTimeoutError(timeoutMs ?? 0)))
        return list.subarray()
      } catch (err) {
        // A clean end of stream between frames reads as "closed"; anything else is an error.
        if ((err as Error).name === 'UnexpectedEOFError' && stream.readStatus !== 'readable') return undefined
        throw err
      }
    },
    async send (frame) {
      await lp.write(frame)
    },
    async close () {
      await stream.close()
    },
    abort (reason) {
      stream.abort(reason)
    }
  }
}
