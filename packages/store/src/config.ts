// Every tunable of the store, with its default and why.

/**
 * Bytes per chunk for new layers. Chosen by scripts/bench-chunk-size (figures in the README):
 * 1 MiB imports within a few percent of 4 MiB, while keeping dedup and zero detection fine-grained
 * (a 4 KiB write in a guest dirties 1 MiB, not 4) and manifests small (36 bytes per MiB).
 */
export const DEFAULT_CHUNK_SIZE = 1 << 20

/** Bounds on chunk sizes a manifest may declare (powers of two in between). */
export const MIN_CHUNK_SIZE = 64 << 10
export const MAX_CHUNK_SIZE = 16 << 20

/**
 * Bounds checked when decoding a manifest (it may come from the network). Chosen to hold any
 * real snapshot with room to spare while capping the memory a hostile manifest can make us use:
 * the expanded chunk list is at most MAX_MANIFEST_CHUNKS entries (32 MiB of pointers).
 */
export const MAX_MANIFEST_BYTES = 64 << 20
export const MAX_LAYERS = 64
export const MAX_LAYER_BYTES = 2 ** 42 // 4 TiB
export const MAX_MANIFEST_CHUNKS = 1 << 22
export const MAX_NAME_LENGTH = 256

/**
 * Chunks written per durability batch during an import: their temp files are fsynced
 * concurrently (libuv's pool runs 4 at a time), then renamed, then each touched directory is
 * fsynced once. Larger batches amortise more but hold more memory (batch x chunk size).
 */
export const DEFAULT_WRITE_BATCH = 16

export const MANIFEST_VERSION = 1
