// @vmesh/placement: the cost of placing clones on a host, the minimum-cost assignment, the
// host-side reservation ledger, and the election that ties them together over libp2p.
export { placementConfig, DEFAULT_WEIGHTS } from './config.js'
export type { PlacementConfig, CostWeights } from './config.js'
export { capacity, freeResources, totalCost, marginalCosts, hostBid } from './cost.js'
export type { Task, Policy, HostResources, HostSnapshot, Capacity, Constraint, HostBid } from './cost.js'
export { assign, isConvex, hullMarginals } from './assign.js'
export type { HostCosts, Assignment } from './assign.js'
export { ReservationLedger, snapshotOf } from './reservations.js'
export type { HostState, Reservation, ReserveRequest, Admission, ReservedTotals, LedgerOptions } from './reservations.js'
export { runElection, ElectionAbortedError } from './election.js'
export type { ElectOptions, ElectionEvent, ElectionResult, ElectionDeps, Placement, HostReason } from './election.js'
export {
  PLACEMENT_PROTOCOL, PlacementHost, PlacementRemoteError, frameTransport, libp2pTransport
} from './placement-protocol.js'
export type {
  Candidate, PlacementTransport, PlacementNode, BidAsk, ReserveAsk, ReserveAnswer, CounterSink, Log
} from './placement-protocol.js'
export { PlacementMessageError, messageLimits, taskFromWire, taskToWire } from './messages.js'
export type { BidFields } from './messages.js'
export { PlacementService, candidatesFromView } from './service.js'
export type { PlacementServiceOptions } from './service.js'
