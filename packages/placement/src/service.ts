// PlacementService: one per agent. It answers other agents' bids and reservations from this
// host's ledger, and runs elections for `clone` requests made here. Its dependencies come in
// through the constructor, so tests run several in one process, over real libp2p or fakes.
import type { ClusterView } from '@vmesh/mesh'
import type { PlacementConfig } from './config.js'
import { placementConfig } from './config.js'
import type { Task } from './cost.js'
import { runElection } from './election.js'
import type { ElectOptions, ElectionResult } from './election.js'
import { frameTransport, libp2pTransport, PLACEMENT_PROTOCOL, PlacementHost } from './placement-protocol.js'
import type { Candidate, CounterSink, Log, PlacementNode, PlacementTransport } from './placement-protocol.js'
import { ReservationLedger } from './reservations.js'
import type { HostState } from './reservations.js'

export interface PlacementServiceOptions {
  /** The libp2p node: serves the protocol and dials other hosts. */
  node: PlacementNode
  /** This host's true state right now. */
  hostState: () => HostState | Promise<HostState>
  /** Candidates for an election: the alive members of the view, this host included. */
  view: () => Candidate[]
  config?: PlacementConfig
  counters?: CounterSink
  log?: Log
  /** Called when reserved totals change: re-advertise (Membership.advertiseSoon). */
  onReservationsChange?: () => void
  /** Replaces the libp2p transport (tests with in-process fakes). */
  transport?: PlacementTransport
}

export class PlacementService {
  readonly ledger: ReservationLedger
  readonly host: PlacementHost
  readonly config: PlacementConfig
  private readonly transport: PlacementTransport
  private readonly selfId: string
  private started = false

  constructor (private readonly opts: PlacementServiceOptions) {
    this.config = opts.config ?? placementConfig()
    this.selfId = opts.node.peerId.toString()
    this.ledger = new ReservationLedger({
      hostState: opts.hostState,
      config: this.config,
      ...(opts.onReservationsChange !== undefined ? { onChange: opts.onReservationsChange } : {}),
      ...(opts.log !== undefined ? { log: opts.log } : {})
    })
    this.host = new PlacementHost({
      ledger: this.ledger,
      config: this.config,
      ...(opts.counters !== undefined ? { counters: opts.counters } : {}),
      ...(opts.log !== undefined ? { log: opts.log } : {})
    })
    const remote = opts.transport ?? libp2pTransport(opts.node, this.config, opts.counters)
    // This host bids and reserves for its own elections without a network round trip, through
    // the same encode/decode path as everyone else.
    const local = async (frame: Uint8Array): Promise<Uint8Array> => await this.host.answer(frame, this.selfId)
    this.transport = withLocalHost(remote, this.selfId, local, this.config, opts.counters)
  }

  async start (): Promise<void> {
    if (this.started) return
    await this.opts.node.handle(PLACEMENT_PROTOCOL, (stream, connection) => {
      void this.host.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 64 })
    this.started = true
  }

  async stop (): Promise<void> {
    if (this.started) await this.opts.node.unhandle(PLACEMENT_PROTOCOL)
    this.started = false
    this.ledger.stop()
  }

  /** Reserves places for `count` clones of `task`; see ElectionResult. */
  /** Runs an election; `exclude` names peer ids to leave out (hosts that just failed a clone). */
  async elect (task: Task, count: number, opts: ElectOptions & { exclude?: ReadonlySet<string> } = {}): Promise<ElectionResult> {
    const exclude = opts.exclude ?? new Set<string>()
    return await runElection({
      transport: this.transport,
      candidates: this.opts.view().filter((c) => !exclude.has(c.id)),
      config: this.config,
      ...(this.opts.log !== undefined ? { log: this.opts.log } : {})
    }, task, count, opts)
  }

  /** Releases a reservation this host made on another host (or its own): clones that failed. */
  async release (host: Candidate, reservationId: string): Promise<boolean> {
    return (await this.transport.release(host, { reservationId }, this.config.reserveTimeoutMs)) > 0
  }
}


function withLocalHost (remote: PlacementTransport, selfId: string, local: (frame: Uint8Array) => Promise<Uint8Array>, config: PlacementConfig, counters?: CounterSink): PlacementTransport {
  const self = frameTransport(async (_host, frame) => await local(frame), config, counters)
  return {
    bid: async (host, ...rest) => await (host.id === selfId ? self : remote).bid(host, ...rest),
    reserve: async (host, ...rest) => await (host.id === selfId ? self : remote).reserve(host, ...rest),
    release: async (host, ...rest) => await (host.id === selfId ? self : remote).release(host, ...rest)
  }
}

/** Candidates from the cluster view: alive members (this host included), with the advert's accelerator. */
export function candidatesFromView (view: Pick<ClusterView, 'list'>): Candidate[] {
  return view.list()
    .filter((e) => e.claim.status === 'alive')
    .map((e) => {
      const accel = e.advert.resources?.accel
      return {
        id: e.id,
        name: e.advert.name,
        peerId: e.peerId,
        ...(typeof accel === 'string' && accel !== '' ? { accel } : {})
      }
    })
}
