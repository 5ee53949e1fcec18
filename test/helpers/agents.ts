// Runs real `vmesh agent` processes for end-to-end tests: each agent is a separate Node process
// on loopback with its own data dir, killed only by the PID this helper started.
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalClient } from '@vmesh/agent'
import { generateClusterKey } from '@vmesh/mesh'
import { memberJson } from '@vmesh/cli'
import type { MemberJson } from '@vmesh/cli'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const cliBin = join(repoRoot, 'packages', 'cli', 'bin', 'vmesh.js')

/** Why QEMU tests cannot run here, or undefined when they can. */
export function missingQemu (): string | undefined {
  for (const bin of ['qemu-system-x86_64', 'qemu-img']) {
    try { execFileSync(bin, ['--version'], { stdio: 'ignore' }) } catch { return `${bin} is not installed (CI installs qemu-system-x86 and qemu-utils)` }
  }
  return undefined
}

export async function waitFor<T> (what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) { lastError = err }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? ` (last error: ${(lastError as Error).message})` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

export class TestCluster {
  readonly root = mkdtempSync(join(tmpdir(), 'vmesh-test-'))
  readonly keyFile = join(this.root, 'cluster.key')
  readonly agents: TestAgent[] = []

  constructor () {
    writeFileSync(this.keyFile, generateClusterKey(), { mode: 0o600 })
  }

  async start (name: string, opts: { bootstrap?: string[], keyFile?: string, extraArgs?: string[], env?: NodeJS.ProcessEnv } = {}): Promise<TestAgent> {
    const agent = new TestAgent(name, join(this.root, name), opts.keyFile ?? this.keyFile, opts.bootstrap ?? [], opts.extraArgs ?? [], opts.env)
    this.agents.push(agent)
    await agent.spawn()
    return agent
  }

  /** Starts n agents; all but the first bootstrap from the first. */
  async startMany (n: number, prefix = 'a', opts: { extraArgs?: string[] } = {}): Promise<TestAgent[]> {
    const first = await this.start(`${prefix}0`, opts)
    const boot = await first.address()
    const rest = await Promise.all(Array.from({ length: n - 1 }, async (_, i) => await this.start(`${prefix}${i + 1}`, { ...opts, bootstrap: [boot] })))
    return [first, ...rest]
  }

  async stop (): Promise<void> {
    await Promise.all(this.agents.map(async (a) => { await a.kill('SIGKILL') }))
    rmSync(this.root, { recursive: true, force: true })
  }
}

export class TestAgent {
  proc: ChildProcess | undefined
  private exited: Promise<number | null> = Promise.resolve(null)
  readonly client: LocalClient

  constructor (
    readonly name: string,
    readonly dataDir: string,
    readonly keyFile: string,
    readonly bootstrap: string[],
    readonly extraArgs: string[],
    readonly env?: NodeJS.ProcessEnv
  ) {
    this.client = new LocalClient(dataDir)
  }

  get pid (): number | undefined {
    return this.proc?.pid
  }

  get running (): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null
  }

  async spawn (): Promise<void> {
    const args = [cliBin, 'agent', '--data-dir', this.dataDir, '--cluster-key', this.keyFile, '--listen', '/ip4/127.0.0.1/tcp/0', '--name', this.name, '--log-level', 'info', ...this.extraArgs]
    for (const b of this.bootstrap) args.push('--bootstrap', b)
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.env } })
    const log = createWriteStream(join(this.dataDir + '.log'), { flags: 'a' })
    proc.stdout.pipe(log)
    proc.stderr.pipe(log)
    this.proc = proc
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)))
    await waitFor(`agent ${this.name} to answer on its control socket`, async () => {
      if (!this.running) throw new Error(`agent ${this.name} exited early, see ${this.dataDir}.log`)
      return (await this.members()).length > 0
    }, 20_000, 100)
  }

  async members (): Promise<MemberJson[]> {
    const reply = await this.client.call({ members: {} })
    return (reply.members?.members ?? []).map(memberJson)
  }

  async self (): Promise<MemberJson> {
    const me = (await this.members()).find((m) => m.self)
    if (me === undefined) throw new Error(`agent ${this.name} does not list itself`)
    return me
  }

  async address (): Promise<string> {
    const me = await this.self()
    return `${me.addrs[0] as string}/p2p/${me.id}`
  }

  async statusOf (id: string): Promise<string | undefined> {
    return (await this.members()).find((m) => m.id === id)?.status
  }

  async kill (signal: NodeJS.Signals): Promise<number | null> {
    if (this.running) this.proc?.kill(signal)
    return await this.exited
  }
}
