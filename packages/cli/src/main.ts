// The `vmesh` command line: parses arguments, runs one command, returns an exit code.
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { Agent, readAgentConfigFile, isLogLevel, AgentError } from '@vmesh/agent'
import type { AgentOptions } from '@vmesh/agent'
import { generateClusterKey, DEFAULT_PORT } from '@vmesh/mesh'
import { clientFor, defaultDataDir, targetOptionSpec } from './options.js'
import { membersCommand, statsCommand } from './commands.js'
import { Shell } from './shell.js'
import { parseVmArgs, runVmCommand, vmUsage } from './vm-commands.js'
import { cloneCommand, cloneUsage, parseCloneArgs } from './clone-command.js'
import { imageCommand, IMAGE_USAGE } from './image-commands.js'
import { isSnapshotSubcommand, parseSnapshotArgs, runSnapshotCommand, snapshotUsage } from './snapshot-commands.js'

/**
 * An agent's old generation may grow to 4x its live size before V8 collects it in full. The live
 * heap is ~23 MB (libp2p, the view), and a transfer allocates ~100 MB/s of short-lived chunk and
 * cipher buffers: with V8's default growth each agent ran a mark-compact every ~0.7 s, 290 in a
 * bench-transfer N=8 run, a tenth of the nine agents' CPU profile; with this, 68. It costs memory:
 * an agent's peak RSS in an N=4 run was 243-254 MiB instead of 205-223 MiB. Set at run time,
 * before the agent starts (V8 reads it at every GC).
 */
const AGENT_HEAP_GROWING_PERCENT = 300

const USAGE = `vmesh: a masterless pool of virtual machines across a rack of Linux hosts

Usage:
  vmesh keygen                               print a new cluster key (save it, copy it to every host)
  vmesh agent --cluster-key FILE [options]   run the agent on this host
      --data-dir DIR        state, identity and control socket (default ${defaultDataDir()})
      --listen MULTIADDR    repeatable (default /ip4/0.0.0.0/tcp/${DEFAULT_PORT})
      --bootstrap MULTIADDR repeatable: any member's address
      --name NAME           host name in the cluster (default: hostname)
      --log-level LEVEL     debug, info, warn, error (default info)
      --accel kvm|tcg|auto  QEMU accelerator (default auto: KVM only where it really works)
      --upload-rate RATE    cap what the swarm sends from this host, e.g. 200mbit (default none)
      --download-rate RATE  cap what the swarm receives on this host
      --config FILE         JSON with the same settings (dataDir, clusterKey, listen, bootstrap,
                            name, logLevel, uploadRate, downloadRate)
  vmesh members [--json] [--status S]        every host: status, load, memory, disk, I/O, VMs
  vmesh stats [--json]                       the agent's counters (rejected input, probes)
  vmesh shell                                interactive shell with live "watch"
${vmUsage}${snapshotUsage}${cloneUsage}${IMAGE_USAGE}
Every command but keygen and agent talks to an agent: the local one (--data-dir DIR) or any
member (--peer MULTIADDR --cluster-key FILE). VMESH_DATA_DIR and VMESH_CLUSTER_KEY set defaults.
`

export async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE)
        return command === undefined ? 2 : 0
      case 'keygen':
        process.stdout.write(generateClusterKey())
        return 0
      case 'agent':
        return await agentCommand(rest)
      case 'members': {
        const { values } = parseArgs({ args: rest, options: { ...targetOptionSpec, json: { type: 'boolean' }, status: { type: 'string' } }, strict: true })
        return await withClient(values, async (c) => await membersCommand(c, { json: values.json, status: values.status, color: process.stdout.isTTY }))
      }
      case 'stats': {
        const { values } = parseArgs({ args: rest, options: { ...targetOptionSpec, json: { type: 'boolean' } }, strict: true })
        return await withClient(values, async (c) => await statsCommand(c, { json: values.json }))
      }
      case 'shell': {
        const { values } = parseArgs({ args: rest, options: targetOptionSpec, strict: true })
        const client = await clientFor(values)
        try {
          await client.call({ members: {} })
          await new Shell(client).run()
        } finally {
          await client.close()
        }
        return 0
      }
      case 'image':
        return await imageCommand(rest)
      case 'clone': {
        const parsed = parseCloneArgs(rest)
        return await withClient(parsed.values, async (c) => await cloneCommand(c, parsed))
      }
      case 'snapshot':
        if (isSnapshotSubcommand(rest)) return await snapshotCommand(rest)
        return await vmCommand(command, rest)
      case 'create':
      case 'vms':
      case 'destroy':
      case 'hotplug':
      case 'console':
        return await vmCommand(command, rest)
      default:
        process.stderr.write(`vmesh: unknown command "${command}"; run "vmesh help"\n`)
        return 2
    }
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      process.stderr.write(`vmesh ${command ?? ''}: ${e.message}; run "vmesh help"\n`)
      return 2
    }
    process.stderr.write(`vmesh: ${e instanceof AgentError ? `the agent says: ${e.message}` : e.message}\n`)
    return 1
  }
}

async function withClient (o: Parameters<typeof clientFor>[0], fn: (c: Awaited<ReturnType<typeof clientFor>>) => Promise<string>): Promise<number> {
  const client = await clientFor(o)
  try {
    process.stdout.write((await fn(client)) + '\n')
    return 0
  } finally {
    await client.close()
  }
}

async function vmCommand (command: string, args: string[]): Promise<number> {
  const parsed = parseVmArgs(command, args)
  return await withClient(parsed.values, async (c) => await runVmCommand(command, parsed, c))
}

/** `snapshot ls|rm`: exits 1 when `rm` left the snapshot somewhere (in use, or a host failed). */
async function snapshotCommand ([sub, ...args]: string[]): Promise<number> {
  const parsed = parseSnapshotArgs(sub ?? '', args)
  const client = await clientFor(parsed.values)
  try {
    const { text, code } = await runSnapshotCommand(sub ?? '', parsed, client)
    process.stdout.write(text + '\n')
    return code
  } finally {
    await client.close()
  }
}

async function agentCommand (args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'data-dir': { type: 'string' },
      listen: { type: 'string', multiple: true },
      bootstrap: { type: 'string', multiple: true },
      'cluster-key': { type: 'string' },
      name: { type: 'string' },
      'log-level': { type: 'string' },
      config: { type: 'string' },
      accel: { type: 'string' },
      'upload-rate': { type: 'string' },
      'download-rate': { type: 'string' }
    },
    strict: true
  })
  const fromFile = values.config !== undefined ? await readAgentConfigFile(values.config) : {}
  const level = values['log-level'] ?? fromFile.logLevel ?? 'info'
  if (!isLogLevel(level)) throw new Error(`--log-level ${level}: use debug, info, warn or error`)
  const clusterKeyPath = values['cluster-key'] ?? fromFile.clusterKeyPath
  if (clusterKeyPath === undefined) throw new Error('vmesh agent needs --cluster-key FILE (make one with "vmesh keygen > cluster.key" and copy it to every host)')
  const opts: AgentOptions = {
    dataDir: values['data-dir'] ?? fromFile.dataDir ?? defaultDataDir(),
    clusterKeyPath,
    listen: values.listen ?? fromFile.listen,
    bootstrap: values.bootstrap ?? fromFile.bootstrap ?? [],
    name: values.name ?? fromFile.name,
    logLevel: level,
    uploadRate: values['upload-rate'] ?? fromFile.uploadRate,
    downloadRate: values['download-rate'] ?? fromFile.downloadRate
  }
  const accel = values.accel ?? 'auto'
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw new Error(`--accel ${accel}: use kvm, tcg or auto`)
  opts.accel = accel
  setFlagsFromString(`--heap-growing-percent=${AGENT_HEAP_GROWING_PERCENT}`)
  const agent = new Agent(opts)
  await agent.start()
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      agent.log.info(`${signal}: leaving the cluster`)
      agent.stop().then(resolve, (err: Error) => { agent.log.error(`stop failed: ${err.message}`); resolve() })
    }
    process.once('SIGTERM', () => shutdown('SIGTERM'))
    process.once('SIGINT', () => shutdown('SIGINT'))
  })
  // Everything is closed; exit even if a library left a handle open, so a supervisor (or a test)
  // never sees a "stopped" agent that still holds its identity.
  process.exit(0)
}
