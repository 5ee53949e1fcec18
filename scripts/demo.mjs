#!/usr/bin/env node
// `npm run demo`: a local vmesh cluster on loopback. Starts three agents as separate processes,
// shows the cluster, starts a real VM (QEMU; the small demo guest is built on first use), clones
// it to 4 copies placed by the agents' election, shows every VM, then destroys the VMs, stops the
// agents gracefully (they announce "left") and cleans up.
import '@vmesh/wire/polyfill'
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, openSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalClient } from '@vmesh/agent'
import { generateClusterKey } from '@vmesh/mesh'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cli = join(root, 'packages', 'cli', 'bin', 'vmesh.js')
const dir = mkdtempSync(join(tmpdir(), 'vmesh-demo-'))
const keyFile = join(dir, 'cluster.key')
const agents = []
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const step = (msg) => console.log(`\n== ${msg}`)

function vmesh (...args) {
  console.log(`$ vmesh ${args.join(' ')}`)
  process.stdout.write(execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8' }))
}

function hasQemu () {
  for (const bin of ['qemu-system-x86_64', 'qemu-img']) {
    try { execFileSync(bin, ['--version'], { stdio: 'ignore' }) } catch { return false }
  }
  return true
}

async function until (what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try { if (await fn()) return } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

function startAgent (name, bootstrap) {
  const dataDir = join(dir, name)
  const log = openSync(join(dir, `${name}.log`), 'a')
  const args = [cli, 'agent', '--data-dir', dataDir, '--cluster-key', keyFile, '--listen', '/ip4/127.0.0.1/tcp/0', '--name', name]
  if (bootstrap !== undefined) args.push('--bootstrap', bootstrap)
  const proc = spawn(process.execPath, args, { stdio: ['ignore', log, log] })
  const agent = { name, dataDir, proc, client: new LocalClient(dataDir) }
  agents.push(agent)
  return agent
}

async function members (agent) {
  return (await agent.client.call({ members: {} })).members?.members ?? []
}

async function main () {
  step('a cluster key for this demo cluster')
  writeFileSync(keyFile, generateClusterKey(), { mode: 0o600 })
  console.log(`$ vmesh keygen > ${keyFile}`)

  step('three agents on loopback, each its own process and data dir')
  const first = startAgent('host-a')
  await until('host-a', async () => (await members(first)).length === 1)
  const self = (await members(first))[0]
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { peerIdFromBytes } = await import('@vmesh/mesh')
  const boot = `${multiaddr(self.addrs[0]).toString()}/p2p/${peerIdFromBytes(self.peerId).toString()}`
  console.log(`host-a listens on ${boot}`)
  startAgent('host-b', boot)
  startAgent('host-c', boot)
  for (const a of agents) await until(`${a.name} to see 3 alive`, async () => (await members(a)).filter((m) => m.state === 1).length === 3)

  step('the cluster as host-c sees it')
  vmesh('members', '--data-dir', join(dir, 'host-c'))

  step('the same from host-a over libp2p, as JSON (first entry)')
  console.log(`$ vmesh members --peer ${boot} --cluster-key ${keyFile} --json`)
  const json = JSON.parse(execFileSync(process.execPath, [cli, 'members', '--peer', boot, '--cluster-key', keyFile, '--json'], { encoding: 'utf8' }))
  console.log(JSON.stringify(json[0], null, 2))

  if (!hasQemu()) {
    console.log('\n(qemu-system-x86_64 or qemu-img is not installed: skipping the VM part. On Debian: apt-get install --no-install-recommends qemu-system-x86 qemu-utils busybox-static)')
  } else {
    step('a VM on host-a (the demo guest: a Debian kernel and a busybox initramfs, built on first use)')
    vmesh('create', 'web', '--mem', '128', '--data-dir', join(dir, 'host-a'))

    step('clone it 4 times, asked from host-b: live snapshot on host-a, election, peer-to-peer transfer, restore')
    vmesh('clone', '4', 'web', '--data-dir', join(dir, 'host-b'))

    step('every VM in the cluster, as host-c sees it')
    await until('host-c to see the 5 VMs', async () => (await agents[2].client.call({ vmList: {} })).vmList.vms.length === 5)
    vmesh('vms', '--data-dir', join(dir, 'host-c'))

    step('destroy the clones across the cluster, then the source')
    vmesh('destroy', '--clones-of', 'web', '--data-dir', join(dir, 'host-c'))
    vmesh('destroy', 'web', '--data-dir', join(dir, 'host-c'))
  }

  step('host-b leaves gracefully (SIGTERM)')
  const b = agents[1]
  b.proc.kill('SIGTERM')
  await until('host-b to be seen as left', async () => (await members(agents[0])).some((m) => m.name === 'host-b' && m.state === 4))
  vmesh('members', '--data-dir', join(dir, 'host-a'))

  step('shutting down')
}

let failed = false
try {
  await main()
} catch (err) {
  failed = true
  console.error(`demo failed: ${err.message}`)
  for (const a of agents) {
    try { console.error(`--- ${a.name}.log\n${readFileSync(join(dir, `${a.name}.log`), 'utf8').split('\n').slice(-15).join('\n')}`) } catch {}
  }
} finally {
  // Whatever happened, no VM outlives the demo.
  for (const a of agents) {
    try {
      const vms = (await a.client.call({ vmList: {} })).vmList?.vms ?? []
      for (const v of vms) if (v.host === a.name) await a.client.call({ vmDestroy: { vm: v.name } }).catch(() => {})
    } catch {}
  }
  await Promise.all(agents.map((a) => new Promise((resolve) => {
    if (a.proc.exitCode !== null || a.proc.signalCode !== null) return resolve()
    a.proc.once('exit', resolve)
    a.proc.kill('SIGTERM')
    setTimeout(() => { a.proc.kill('SIGKILL') }, 5000).unref()
  })))
  rmSync(dir, { recursive: true, force: true })
  console.log(failed ? 'demo failed; cleaned up' : 'all agents stopped; demo data removed')
  process.exitCode = failed ? 1 : 0
}
