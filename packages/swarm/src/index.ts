// @vmesh/swarm: Peer-to-peer multicast transfer of manifests' chunks

// The bulk data plane: an authenticated AES-256-GCM channel over plain TCP, keyed through libp2p.
export {
  deriveBulkKeys, RecordSealer, RecordOpener, BulkProtocolError, RecordTooLargeError, RecordAuthError, TruncatedStreamError,
  RECORD_HEADER_BYTES, RECORD_TAG_BYTES, RECORD_LIMIT_BYTES, BULK_KEY_BYTES, BULK_SECRET_BYTES, BULK_TICKET_BYTES
} from './bulk-cipher.js'
export type { BulkKeys, BulkKeyInput, OpenedRecord } from './bulk-cipher.js'
export { BulkChannel, BulkChannelClosedError, dialBulkChannel, DEFAULT_BULK_OPTIONS, resolveBulkOptions, BULK_MAGIC, BULK_HELLO_BYTES } from './bulk-channel.js'
export type { BulkChannelOptions, DialBulkOptions } from './bulk-channel.js'
export { BulkListener } from './bulk-listener.js'
export type { BulkListenerOptions, BulkListenerStats } from './bulk-listener.js'
export { createBulkOffer, acceptBulkOffer, decodeBulkOffer, BULK_OFFER_VERSION, MAX_BULK_OFFER_BYTES } from './bulk-offer.js'
export type { CreateBulkOfferOptions, AcceptBulkOfferOptions, BulkOfferHandle, DecodedBulkOffer } from './bulk-offer.js'

// The swarm transfer: seeds upload each chunk about once, targets relay to each other.
export { SwarmService } from './swarm-service.js'
export type { SwarmServiceOptions, PushTarget, PushOptions, PushResult, LivePush } from './swarm-service.js'
export { DEFAULT_SWARM_CONFIG, parseSwarmTuning, SWARM_TUNING_ENV } from './swarm-config.js'
export type { SwarmConfig, RateLimits } from './swarm-config.js'
export type { CounterSink, SwarmLog } from './swarm-context.js'
export { planTransfer, reassignStripe, planLowerBoundMs, seedEgressRatio } from './transfer-plan.js'
export type { TransferPlan, PlanTarget, LinkRates } from './transfer-plan.js'
export { updateRate, initialRate, etaMs, RATE_TAU_MS } from './progress.js'
export type { HostProgress, HostState, RateState } from './progress.js'
export { RateLimiter, refill, waitMsFor } from './rate-limiter.js'
export { Bitfield, BitfieldError } from './bitfield.js'
export { SESSION_PROTOCOL, CHUNK_PROTOCOL, SWARM_VERSION, swarmLimits, SwarmProtocolError } from './swarm-protocol.js'
