// The lab from TypeScript: end-to-end tests and benchmarks bring up several hosts (network
// namespaces behind a shaped bridge, see scripts/lab) and run processes inside them.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const LAB_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'lab')

function hasCommand (name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export class Lab {
  /** Every lab this process brought up and has not taken down, for exit-time cleanup. */
  private static readonly live = new Set<Lab>()
  private readonly children = new Set<ChildProcess>()
  private isUp = true

  private constructor (
    /** Namespace prefix: host i lives in namespace `${prefix}-${i}`. */
    readonly prefix: string,
    readonly hosts: number,
    readonly rate: string
  ) {}

  /** Whether this machine can run a lab, and if not, a sentence saying why. */
  static available (): { ok: boolean, reason?: string } {
    if (process.platform !== 'linux') return { ok: false, reason: `the lab needs Linux network namespaces; this is ${process.platform}` }
    if (process.getuid?.() !== 0) return { ok: false, reason: 'the lab needs root to create network namespaces (run the tests as root, as CI does)' }
    for (const cmd of ['ip', 'tc']) {
      if (!hasCommand(cmd)) return { ok: false, reason: `the lab needs the '${cmd}' command (iproute2), which is not installed` }
    }
    return { ok: true }
  }

  /**
   * Brings up n hosts, each link shaped to rate (a tc rate such as "200mbit") both ways.
   * `sysctls` ("net.ipv4.name=value ...") are set in every host (default: $VMESH_LAB_SYSCTLS).
   */
  static async up (n: number, rate: string, opts: { sysctls?: string } = {}): Promise<Lab> {
    const check = Lab.available()
    if (!check.ok) throw new Error(`cannot start the lab: ${check.reason ?? 'unknown reason'}`)
    const prefix = `vmlab-${process.pid}-${randomBytes(3).toString('hex')}`
    const lab = new Lab(prefix, n, rate)
    Lab.live.add(lab)
    Lab.installExitHook()
    try {
      const sysctls = opts.sysctls ?? process.env.VMESH_LAB_SYSCTLS ?? ''
      await lab.script(['up', String(n), rate], { VMESH_LAB_SYSCTLS: sysctls })
      lab.sysctlsSet = sysctls
    } catch (err) {
      // The script removes a half-built lab itself; down again in case it was killed midway.
      await lab.down()
      throw err
    }
    return lab
  }

  /** Host i's address on the lab network (10.77.0.i+1). */
  addr (i: number): string {
    this.checkHost(i)
    return `10.77.0.${i + 1}`
  }

  /** Host i's network namespace. */
  ns (i: number): string {
    this.checkHost(i)
    return `${this.prefix}-${i}`
  }

  /** What VMESH_LAB_SYSCTLS set in every host at up() ('' for none). */
  private sysctlsSet = ''

  /** The hosts' TCP settings that most change a swarm's speed, for a benchmark's first lines. */
  tcpSettings (): string {
    const how = this.sysctlsSet === '' ? "the machine's settings" : `VMESH_LAB_SYSCTLS="${this.sysctlsSet}"`
    return `congestion control ${this.sysctl(0, 'net.ipv4.tcp_congestion_control')}, slow start after idle ${this.sysctl(0, 'net.ipv4.tcp_slow_start_after_idle')} (${how})`
  }

  /**
   * A sysctl as host i sees it, e.g. "net.ipv4.tcp_congestion_control": a new namespace takes
   * the machine's values for these unless VMESH_LAB_SYSCTLS set them (see scripts/lab).
   */
  sysctl (i: number, name: string): string {
    if (!/^net\.[a-z0-9_.]+$/.test(name)) throw new Error(`not a network sysctl name: ${name}`)
    return execFileSync('ip', ['netns', 'exec', this.ns(i), 'cat', `/proc/sys/${name.replaceAll('.', '/')}`], { encoding: 'utf8' }).trim()
  }

  /** Spawns cmd inside host i's namespace; the process is killed by down() if still running. */
  exec (i: number, cmd: string, args: string[] = [], options: SpawnOptions = {}): ChildProcess {
    if (!this.isUp) throw new Error(`lab ${this.prefix} is down`)
    const child = spawn('ip', ['netns', 'exec', this.ns(i), cmd, ...args], { stdio: 'pipe', ...options })
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
    return child
  }

  /** Kills what exec() started and removes every namespace and link of this lab. */
  async down (): Promise<void> {
    this.isUp = false
    for (const child of this.children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
    this.children.clear()
    try {
      await this.script(['down'])
    } finally {
      Lab.live.delete(this)
    }
  }

  /** Namespaces of this lab that currently exist (empty after down()). */
  namespaces (): string[] {
    const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    return out.split('\n').map((l) => l.split(' ')[0] ?? '').filter((name) => name.startsWith(`${this.prefix}-`))
  }

  private checkHost (i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.hosts) {
      throw new Error(`host ${i} does not exist; lab ${this.prefix} has hosts 0..${this.hosts - 1}`)
    }
  }

  private async script (args: string[], env: NodeJS.ProcessEnv = {}): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(LAB_SCRIPT, args, { env: { ...process.env, ...env, VMESH_LAB_PREFIX: this.prefix }, stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      child.stdout.resume()
      child.once('error', reject)
      child.once('exit', (code) => {
        if (code === 0) resolve()
        else reject(new Error(`scripts/lab ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`))
      })
    })
  }

  private static exitHookInstalled = false
  private static installExitHook (): void {
    if (Lab.exitHookInstalled) return
    Lab.exitHookInstalled = true
    // Last resort if a test runner exits without afterAll: remove labs synchronously.
    process.once('exit', () => {
      for (const lab of Lab.live) {
        try {
          execFileSync(LAB_SCRIPT, ['down'], { env: { ...process.env, VMESH_LAB_PREFIX: lab.prefix }, stdio: 'ignore' })
        } catch {}
      }
    })
  }
}
