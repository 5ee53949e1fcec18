// The disk quota of a chunk store: arithmetic kept pure so tests drive it directly.

export function formatBytes (n: number): string {
  if (n >= 1 << 30) return `${(n / 2 ** 30).toFixed(2)} GiB`
  if (n >= 1 << 20) return `${(n / 2 ** 20).toFixed(1)} MiB`
  if (n >= 1 << 10) return `${(n / 2 ** 10).toFixed(1)} KiB`
  return `${n} B`
}

export class QuotaExceededError extends Error {
  override readonly name = 'QuotaExceededError'
  constructor (
    /** bytes the operation still needed to store */
    readonly neededBytes: number,
    /** bytes free under the quota when it failed */
    readonly freeBytes: number,
    readonly quotaBytes: number,
    readonly dir: string,
    what = 'storing the chunks'
  ) {
    super(`chunk store quota exceeded at ${dir}: ${what} needs ${formatBytes(neededBytes)} more, ` +
      `but only ${formatBytes(freeBytes)} of the ${formatBytes(quotaBytes)} quota is free; ` +
      'delete unused images and run gc, or raise the store quota')
  }
}

/** Free bytes under a quota given what is stored and what is reserved by writes in flight. */
export function quotaFree (quotaBytes: number, storedBytes: number, reservedBytes: number): number {
  return Math.max(0, quotaBytes - storedBytes - reservedBytes)
}

/** Whether `wanted` more bytes fit. An infinite quota always fits. */
export function quotaAllows (quotaBytes: number, storedBytes: number, reservedBytes: number, wanted: number): boolean {
  return wanted <= quotaFree(quotaBytes, storedBytes, reservedBytes)
}
