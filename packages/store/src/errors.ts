// Errors a person or a caller acts on. Messages say what happened and what to do.

/** A stored or received chunk whose bytes do not hash to its name. It is never returned or kept. */
export class CorruptChunkError extends Error {
  override readonly name = 'CorruptChunkError'
  constructor (readonly hash: string, readonly actual: string, readonly where: string) {
    super(`chunk ${hash.slice(0, 16)}… is corrupt (${where}: bytes hash to ${actual.slice(0, 16)}…); it was discarded, fetch it again from a peer`)
  }
}

export class ChunkNotFoundError extends Error {
  override readonly name = 'ChunkNotFoundError'
  constructor (readonly hash: string, dir: string) {
    super(`chunk ${hash.slice(0, 16)}… is not in the chunk store at ${dir}; fetch it from a peer first`)
  }
}

/** A manifest that fails to decode or breaks a bound. Always safe to show to a person. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError'
}

export class ManifestNotFoundError extends Error {
  override readonly name = 'ManifestNotFoundError'
  constructor (readonly id: string, dir: string) {
    super(`manifest ${id.slice(0, 16)}… is not in ${dir}; list ids with \`vmesh image ls\``)
  }
}
