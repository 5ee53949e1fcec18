// `vmesh shell`: an interactive shell on the local agent or any peer, with history, tab
// completion and a live `watch` view of the cluster.
import { createInterface } from 'node:readline'
import type { Interface } from 'node:readline'
import { readFileSync, appendFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { ControlClient } from '@vmesh/agent'
import { membersCommand, statsCommand, STATUSES } from './commands.js'
import { memberJson, membersTable, summary } from './format.js'
import { parseVmArgs, runVmCommand } from './vm-commands.js'
import { cloneCommand, parseCloneArgs } from './clone-command.js'
import { isSnapshotSubcommand, parseSnapshotArgs, runSnapshotCommand, SNAPSHOT_SUBCOMMANDS } from './snapshot-commands.js'
import { IMAGE_SHELL_SUBCOMMANDS, imageShellCommand } from './image-commands.js'

const HISTORY_FILE = join(homedir(), '.vmesh_history')
const HISTORY_MAX = 1000

interface ShellCommand {
  usage: string
  help: string
  run: (args: string[], shell: Shell) => Promise<void>
}

const commands: Record<string, ShellCommand> = {
  help: { usage: 'help', help: 'list commands', run: async (_a, s) => { s.print(helpText()) } },
  members: {
    usage: 'members [--status S] [--json]',
    help: 'one row per host: status, load, memory, disk, I/O, VMs',
    run: async (args, s) => {
      const { values } = parseArgs({ args, options: { status: { type: 'string' }, json: { type: 'boolean' } }, strict: true })
      s.print(await membersCommand(s.client, { status: values.status, json: values.json, color: s.color }))
    }
  },
  stats: {
    usage: 'stats [--json]',
    help: 'counters of rejected input and failure detection',
    run: async (args, s) => {
      const { values } = parseArgs({ args, options: { json: { type: 'boolean' } }, strict: true })
      s.print(await statsCommand(s.client, { json: values.json }))
    }
  },
  vms: { usage: 'vms [--json]', help: 'every VM in the cluster', run: async (args, s) => { s.print(await runVmCommand('vms', parseVmArgs('vms', args), s.client)) } },
  create: { usage: 'create NAME [--image ID|NAME|FILE] [--cpus N] [--mem MiB]', help: 'start a VM on the connected host', run: async (args, s) => { s.print(await runVmCommand('create', parseVmArgs('create', args), s.client)) } },
  clone: {
    usage: 'clone N VM [--policy spread|pack] [--partial]',
    help: 'N clones of VM on the best hosts, with live progress',
    run: async (args, s) => { s.print(await cloneCommand(s.client, parseCloneArgs(args))) }
  },
  snapshot: {
    usage: 'snapshot VM | snapshot ls [--json] | snapshot rm ID [--force]',
    help: 'live snapshot into the chunk store; list the cluster\'s snapshots; delete one everywhere',
    run: async (args, s) => {
      if (!isSnapshotSubcommand(args)) { s.print(await runVmCommand('snapshot', parseVmArgs('snapshot', args), s.client)); return }
      const [sub, ...rest] = args as [string, ...string[]]
      s.print((await runSnapshotCommand(sub, parseSnapshotArgs(sub, rest), s.client)).text)
    }
  },
  image: {
    usage: 'image ls [--json] | image push ID|NAME --hosts all|N|H,.. | image rm ID|NAME [--json]',
    help: 'images in the cluster\'s stores: list, send to hosts (a progress bar per host), remove everywhere',
    run: async (args, s) => {
      const text = await imageShellCommand(args, s.client)
      if (text !== '') s.print(text)
    }
  },
  destroy: { usage: 'destroy VM | destroy --clones-of VM', help: 'destroy a VM, or every clone of it, wherever they run', run: async (args, s) => { s.print(await runVmCommand('destroy', parseVmArgs('destroy', args), s.client)) } },
  hotplug: { usage: 'hotplug VM [--cpus N] [--mem MiB]', help: 'grow a running VM', run: async (args, s) => { s.print(await runVmCommand('hotplug', parseVmArgs('hotplug', args), s.client)) } },
  console: { usage: 'console VM [--bytes N]', help: 'the VM\'s serial console', run: async (args, s) => { s.print(await runVmCommand('console', parseVmArgs('console', args), s.client)) } },
  watch: { usage: 'watch', help: 'live view that redraws as hosts change state; Enter or Ctrl-C returns', run: async (_a, s) => { await s.watch() } },
  exit: { usage: 'exit', help: 'leave the shell (also Ctrl-D)', run: async (_a, s) => { s.rl.close() } }
}

function helpText (): string {
  const width = Math.max(...Object.values(commands).map((c) => c.usage.length))
  return Object.values(commands).map((c) => `  ${c.usage.padEnd(width)}  ${c.help}`).join('\n')
}

/** Completes command names, then options and status values. */
export function complete (line: string): [string[], string] {
  const words = line.split(/\s+/)
  const last = words[words.length - 1] ?? ''
  if (words.length <= 1) return [Object.keys(commands).filter((c) => c.startsWith(last)), last]
  const prev = words[words.length - 2]
  if (prev === '--status') return [STATUSES.filter((s) => s.startsWith(last)), last]
  if (words[0] === 'snapshot' && words.length === 2) return [SNAPSHOT_SUBCOMMANDS.filter((c) => c.startsWith(last)), last]
  if (words[0] === 'image' && words.length === 2) return [IMAGE_SHELL_SUBCOMMANDS.filter((c) => c.startsWith(last)), last]
  const usage = commands[words[0] ?? '']?.usage ?? ''
  const flags = usage.match(/--[a-z-]+/g) ?? []
  return [flags.filter((f) => f.startsWith(last)), last]
}

/** Splits a line into words, honouring simple quotes. */
export function splitWords (line: string): string[] {
  const out: string[] = []
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g
  let m: RegExpExecArray | null
  while ((m = re.exec(line)) !== null) out.push(m[1] ?? m[2] ?? m[3] ?? '')
  return out
}

export class Shell {
  readonly rl: Interface
  readonly color: boolean
  private watching: AbortController | undefined

  constructor (readonly client: ControlClient, private readonly out: NodeJS.WriteStream = process.stdout) {
    this.color = out.isTTY === true
    let history: string[] = []
    try { history = readFileSync(HISTORY_FILE, 'utf8').split('\n').filter((l) => l.length > 0).reverse().slice(0, HISTORY_MAX) } catch { /* first run */ }
    this.rl = createInterface({ input: process.stdin, output: out, completer: complete, history, historySize: HISTORY_MAX, prompt: 'vmesh> ' })
  }

  print (text: string): void {
    this.out.write(text + '\n')
  }

  async run (): Promise<void> {
    this.print(`connected to ${this.client.target}; type "help" for commands`)
    this.rl.on('SIGINT', () => {
      if (this.watching !== undefined) this.watching.abort()
      else { this.out.write('^C\n'); this.rl.prompt() }
    })
    this.rl.prompt()
    for await (const raw of this.rl) {
      const line = raw.trim()
      if (line.length > 0) {
        try { appendFileSync(HISTORY_FILE, line + '\n', { mode: 0o600 }) } catch { /* history is a convenience */ }
        await this.execute(line)
      }
      this.rl.prompt()
    }
  }

  async execute (line: string): Promise<void> {
    const [name, ...args] = splitWords(line)
    const cmd = commands[name ?? '']
    if (cmd === undefined) {
      this.print(`unknown command "${name ?? ''}"; type "help"`)
      return
    }
    try {
      await cmd.run(args, this)
    } catch (err) {
      this.print(`error: ${(err as Error).message}`)
    }
  }

  async watch (): Promise<void> {
    const abort = new AbortController()
    this.watching = abort
    const onLine = (): void => abort.abort()
    this.rl.once('line', onLine)
    try {
      for await (const reply of this.client.stream({ watch: {} }, abort.signal)) {
        if (abort.signal.aborted) break
        const members = (reply.members?.members ?? []).map(memberJson)
        this.out.write('\x1b[H\x1b[2J')
        this.print(`vmesh watch on ${this.client.target}  ${new Date().toLocaleTimeString()}  (Enter or Ctrl-C to return)\n`)
        this.print(membersTable(members, this.color))
        this.print(`\n${members.length} host(s): ${summary(members)}`)
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err
    } finally {
      this.rl.off('line', onLine)
      this.watching = undefined
    }
  }
}
