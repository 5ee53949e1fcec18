// Real `vmesh agent` processes inside lab hosts (network namespaces, see test/lab.ts): each listens
// on its host's lab address, so agent-to-agent traffic crosses the shaped links. The control
// socket is a unix socket in the data dir, reachable from the root namespace. Processes are
// killed only by the PID this helper started (Lab.down() kills the rest).
import type { ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalClient } from '@vmesh/agent'
import { generateClusterKey } from '@vmesh/mesh'
import type { Lab } from '../lab.js'
import { cliBin, waitFor } from './agents.js'

export const LAB_AGENT_PORT = 7946
/**
 * VMESH_AGENT_NODE_FLAGS: extra Node flags for every lab agent, to look inside a benchmark, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" (a profile per agent) or "--trace-gc" (in the agents' logs).
 */
const extraNodeFlags = (process.env.VMESH_AGENT_NODE_FLAGS ?? '').split(/\s+/).filter((f) => f !== '')
/** A profiling agent writes its profile only when it exits cleanly. */
const profiling = extraNodeFlags.includes('--cpu-prof')

export class LabAgents {
  readonly root: string
  readonly keyFile: string
  readonly agents: Array<LabAgent | undefined> = []

  constructor (readonly lab: Lab, opts: { root?: string } = {}) {
    this.root = opts.root ?? mkdtempSync(join(tmpdir(), 'vmesh-lab-'))
    mkdirSync(this.root, { recursive: true })
    this.keyFile = join(this.root, 'cluster.key')
    writeFileSync(this.keyFile, generateClusterKey(), { mode: 0o600 })
  }

  /** The multiaddr other agents bootstrap from to reach host i's agent. */
  addr (i: number): string {
    return `/ip4/${this.lab.addr(i)}/tcp/${LAB_AGENT_PORT}`
  }

  /** Starts (or restarts, same data dir) the agent of host i; hosts other than 0 bootstrap from host 0. */
  async start (i: number, opts: { env?: NodeJS.ProcessEnv, logLevel?: string } = {}): Promise<LabAgent> {
    const agent = new LabAgent(this, i)
    this.agents[i] = agent
    await agent.spawn(i === 0 ? [] : [this.addr(0)], opts)
    return agent
  }

  /** Starts hosts 0..n-1 and waits until every agent sees n alive members. */
  async startAll (n: number, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<LabAgent[]> {
    const first = await this.start(0, opts)
    const rest = await Promise.all(Array.from({ length: n - 1 }, async (_, k) => await this.start(k + 1, opts)))
    const all = [first, ...rest]
    await waitFor(`all ${n} lab agents to see each other alive`, async () => {
      for (const a of all) {
        const r = await a.client.call({ members: {} })
        if ((r.members?.members ?? []).filter((m) => m.state === 1).length < n) return false
      }
      return true
    }, 60_000, 200)
    return all
  }

  /** Bytes host i's interface has sent (its upload, as the shaped link saw it). */
  txBytes (i: number): number {
    return this.linkBytes(i).tx
  }

  /** Bytes host i's interface has sent and received. */
  linkBytes (i: number): { tx: number, rx: number } {
    const out = execFileSync('ip', ['-n', this.lab.ns(i), '-s', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' })
    const j = JSON.parse(out) as Array<{ stats64?: { tx?: { bytes?: number }, rx?: { bytes?: number } } }>
    return { tx: Number(j[0]?.stats64?.tx?.bytes ?? 0), rx: Number(j[0]?.stats64?.rx?.bytes ?? 0) }
  }

  async stopAll (): Promise<void> {
    // A profiled agent writes its profile only on a clean exit: ask first, then insist.
    if (profiling) {
      await Promise.all(this.agents.map(async (a) => {
        if (a === undefined) return
        const timer = setTimeout(() => { void a.kill('SIGKILL') }, 10_000)
        await a.kill('SIGTERM')
        clearTimeout(timer)
      }))
    }
    for (const a of this.agents) await a?.kill('SIGKILL')
  }

  /**
   * Removes data dirs and logs; with VMESH_KEEP_LAB_FILES=1 the agents' logs stay (the stores and
   * images go: a few kept --tmpfs benchmarks would otherwise fill the machine's memory).
   */
  removeFiles (): void {
    if (process.env.VMESH_KEEP_LAB_FILES === '1') {
      for (const name of readdirSync(this.root)) if (!name.endsWith('.log')) rmSync(join(this.root, name), { recursive: true, force: true })
      console.log(`lab agent logs kept in ${this.root}`)
      return
    }
    rmSync(this.root, { recursive: true, force: true })
  }
}

export class LabAgent {
  proc: ChildProcess | undefined
  readonly dataDir: string
  readonly client: LocalClient
  readonly name: string
  private exited: Promise<void> = Promise.resolve()

  constructor (readonly cluster: LabAgents, readonly host: number) {
    this.name = `h${host}`
    this.dataDir = join(cluster.root, this.name)
    this.client = new LocalClient(this.dataDir)
  }

  get running (): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null
  }

  async spawn (bootstrap: string[], opts: { env?: NodeJS.ProcessEnv, logLevel?: string }): Promise<void> {
    const args = [...extraNodeFlags, cliBin, 'agent', '--data-dir', this.dataDir, '--cluster-key', this.cluster.keyFile,
      '--listen', this.cluster.addr(this.host), '--name', this.name, '--log-level', opts.logLevel ?? 'info']
    for (const b of bootstrap) args.push('--bootstrap', b)
    // `ip netns exec` execs the command in place: the child's PID is the agent's.
    const proc = this.cluster.lab.exec(this.host, process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    const log = createWriteStream(`${this.dataDir}.log`, { flags: 'a' })
    proc.stdout?.pipe(log)
    proc.stderr?.pipe(log)
    this.proc = proc
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    await waitFor(`lab agent ${this.name} to answer`, async () => {
      if (!this.running) throw new Error(`lab agent ${this.name} exited early; see ${this.dataDir}.log`)
      const r = await this.client.call({ members: {} })
      return (r.members?.members?.length ?? 0) > 0
    }, 30_000, 100)
  }

  async kill (signal: NodeJS.Signals): Promise<void> {
    if (this.running) this.proc?.kill(signal)
    await this.exited
  }
}
