// Progress arithmetic for one host of a transfer: a smoothed rate and the time left. Pure, so the
// tests drive it with a fake clock; the service only feeds it (bytes, time) samples.

/** Time constant of the rate's exponential smoothing: long enough to calm bursts of 1 MiB chunks. */
export const RATE_TAU_MS = 1500

export interface RateState {
  /** Bytes per second, smoothed. */
  rate: number
  lastBytes: number
  lastAtMs: number
  started: boolean
}

export function initialRate (bytes: number, atMs: number): RateState {
  return { rate: 0, lastBytes: bytes, lastAtMs: atMs, started: false }
}

/**
 * Folds a sample into the smoothed rate: the instantaneous rate since the last sample, weighted by
 * 1 - exp(-dt/tau). The first sample with progress takes the instantaneous rate as it is.
 */
export function updateRate (s: RateState, bytes: number, atMs: number, tauMs = RATE_TAU_MS): RateState {
  const dt = atMs - s.lastAtMs
  if (dt <= 0) return s
  const instant = Math.max(0, bytes - s.lastBytes) * 1000 / dt
  if (!s.started) {
    if (bytes === s.lastBytes) return { ...s, lastAtMs: atMs }
    return { rate: instant, lastBytes: bytes, lastAtMs: atMs, started: true }
  }
  const w = 1 - Math.exp(-dt / tauMs)
  return { rate: s.rate + w * (instant - s.rate), lastBytes: bytes, lastAtMs: atMs, started: true }
}

/** Milliseconds left at the given rate; undefined when unknown (no rate yet). */
export function etaMs (bytesLeft: number, bytesPerS: number): number | undefined {
  if (bytesLeft <= 0) return 0
  if (!(bytesPerS > 0)) return undefined
  return Math.ceil(bytesLeft * 1000 / bytesPerS)
}

export type HostState = 'waiting' | 'transferring' | 'done' | 'failed'

/** One host's progress as the requester sees it. */
export interface HostProgress {
  /** Peer id. */
  host: string
  /** The same as multihash bytes, as the wire carries it. */
  hostBytes?: Uint8Array
  name: string
  state: HostState
  bytesDone: number
  bytesTotal: number
  /** Bytes received during this push (excludes what the host held before). */
  bytesFetched: number
  rateBytesPerS: number
  etaMs: number | undefined
  error?: string
}
