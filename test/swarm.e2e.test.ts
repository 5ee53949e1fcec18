// A push through the swarm between real agent processes on loopback: one agent imports a file and
// pushes it to three others; every copy exports bit-identical, the source uploads the image about
// once, a second push moves nothing, and the targets advertise the image as held.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createMeshNode, parseClusterKey, peerIdToBytes, MESH_TOPICS } from '@vmesh/mesh'
import { encodeFrame, pb, streamChannel } from '@vmesh/wire'
import { SESSION_PROTOCOL, CHUNK_PROTOCOL } from '@vmesh/swarm'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { TestCluster, waitFor, cliBin, type TestAgent } from './helpers/agents.js'

const run = promisify(execFile)
async function vmesh (dataDir: string, ...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> {
  try {
    const r = await run(process.execPath, [cliBin, ...args, '--data-dir', dataDir], { timeout: 60_000 })
    return { ...r, code: 0 }
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string, code?: number }
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code ?? 1 }
  }
}

/** Runs `vmesh shell` with these lines on its standard input; resolves with what it printed. */
async function shellLines (dataDir: string, ...lines: string[]): Promise<string> {
  const child = spawn(process.execPath, [cliBin, 'shell', '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  child.stdin.end(lines.join('\n') + '\n')
  const timer = setTimeout(() => child.kill(), 60_000)
  await new Promise((resolve) => child.on('close', resolve))
  clearTimeout(timer)
  return out
}

const SIZE = 24 * 1024 * 1024 + 12345

function makeImage (path: string): string {
  const data = randomBytes(SIZE)
  data.fill(0, 4 << 20, 7 << 20) // a zero region: never stored nor sent
  data.set(data.subarray(0, 1 << 20), 10 << 20) // a repeated chunk: stored and sent once
  writeFileSync(path, data)
  return createHash('sha256').update(data).digest('hex')
}

describe('swarm push between four agents on loopback', () => {
  const cluster = new TestCluster()
  let agents: TestAgent[]
  let digest: string
  let imagePath: string

  beforeAll(async () => {
    agents = await cluster.startMany(4, 's')
    await waitFor('every agent to see four alive members', async () => {
      for (const a of agents) if ((await a.members()).filter((m) => m.status === 'alive').length < 4) return false
      return true
    }, 30_000)
    imagePath = join(cluster.root, 'disk.raw')
    digest = makeImage(imagePath)
  })

  afterAll(async () => { await cluster.stop() })

  /** A libp2p node with the cluster key (a member, not an agent) on loopback, to speak the swarm protocols by hand. */
  async function memberNode (): Promise<Awaited<ReturnType<typeof createMeshNode>>> {
    return await createMeshNode({
      privateKey: await generateKeyPair('Ed25519'),
      clusterKey: parseClusterKey(readFileSync(cluster.keyFile, 'utf8')),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      topics: MESH_TOPICS,
      maxMessageBytes: 1 << 20
    })
  }

  it('pushes one image to three hosts; the source uploads it about once; all copies are identical', async () => {
    const [src] = agents as [TestAgent]
    const added = await src.client.call({ imageAdd: { path: imagePath, name: 'disk' } })
    const id = added.imageAdd?.image?.id ?? ''
    const stored = Number(added.imageAdd?.image?.storedBytes ?? 0)
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    expect(stored).toBe(SIZE - 3 * 1024 * 1024 - 1024 * 1024)

    const progress: string[] = []
    let final
    for await (const r of src.client.stream({ imagePush: { ref: 'disk', hosts: 'all' } })) {
      if (r.transferProgress != null) progress.push(`${r.transferProgress.hostName ?? ''}:${r.transferProgress.state ?? ''}`)
      if (r.imagePush != null) final = r.imagePush
    }
    expect(final).toBeDefined()
    const hosts = final?.hosts ?? []
    expect(hosts.map((h) => `${h.state ?? ''}${h.error != null && h.error !== '' ? `: ${h.error}` : ''}`)).toEqual(['done', 'done', 'done'])
    expect(hosts.every((h) => Number(h.bytesDone) === stored)).toBe(true)
    // Progress reached the requester for every host.
    for (const h of ['s1', 's2', 's3']) expect(progress.some((p) => p.startsWith(`${h}:`))).toBe(true)
    const egress = Number(final?.sourceEgressBytes ?? 0)
    expect(egress).toBeGreaterThanOrEqual(stored)
    expect(egress / stored).toBeLessThan(1.3)

    for (const [i, a] of agents.slice(1).entries()) {
      const out = join(cluster.root, `export-${i}.raw`)
      await a.client.call({ imageExport: { ref: id, outPath: out } })
      expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(digest)
    }

    // Targets advertise the image: the source's list shows four holders.
    await waitFor('all four hosts listed as holders', async () => {
      const list = await src.client.call({ imageList: {} })
      return (list.imageList?.images?.[0]?.holders?.length ?? 0) === 4
    }, 15_000)

    // Pushing again moves nothing: every host already holds it.
    await expect(src.client.call({ imagePush: { ref: 'disk', hosts: 's1,s2' } })).resolves.toBeDefined()
    const again = await src.client.call({ imagePush: { ref: id, hosts: 's1' } })
    expect(Number(again.imagePush?.sourceEgressBytes ?? 0)).toBe(0)
  })

  it('garbage on the swarm protocols is rejected and counted; the agent keeps serving', async () => {
    const [src, t1] = agents as [TestAgent, TestAgent]
    const attacker = await memberNode()
    try {
      const target = multiaddr(await t1.address())
      const session = (start: Record<string, unknown>): Uint8Array => encodeFrame(pb.SwarmSessionFrame.encode({ start }).finish())
      const payloads: Array<[string, Uint8Array]> = [
        [SESSION_PROTOCOL, randomBytes(3000)],
        [SESSION_PROTOCOL, encodeFrame(randomBytes(300))],
        [SESSION_PROTOCOL, Buffer.concat([encodeFrame(new Uint8Array(0)).subarray(0, 0), new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7f])])],
        [SESSION_PROTOCOL, session({ version: 1, sessionId: randomBytes(16), manifest: randomBytes(500), peers: [{ peerId: randomBytes(38), seed: true }] })],
        [SESSION_PROTOCOL, session({ version: 1, sessionId: randomBytes(16), manifest: randomBytes(10), peers: Array.from({ length: 2000 }, () => ({ peerId: randomBytes(38), seed: true })) })],
        [SESSION_PROTOCOL, session({ version: 7, sessionId: randomBytes(16), manifest: randomBytes(10), peers: [] })],
        // Live pushes: a capacity past the bound, a live start that also carries a manifest, and
        // a live session whose first announce skips ahead, then a seal of garbage.
        [SESSION_PROTOCOL, session({ version: 1, sessionId: randomBytes(16), liveCapacity: 100_000_000, peers: [{ peerId: randomBytes(38), seed: true }] })],
        [SESSION_PROTOCOL, session({ version: 1, sessionId: randomBytes(16), liveCapacity: 10, manifest: randomBytes(10), peers: [{ peerId: randomBytes(38), seed: true }] })],
        [SESSION_PROTOCOL, Buffer.concat([
          session({ version: 1, sessionId: randomBytes(16), liveCapacity: 10, peers: [{ peerId: peerIdToBytes(attacker.peerId), seed: true }] }),
          encodeFrame(pb.SwarmSessionFrame.encode({ plan: { seedChunks: new Uint8Array(2) } }).finish()),
          encodeFrame(pb.SwarmSessionFrame.encode({ announce: { firstIndex: 5, hashes: [randomBytes(32)], sizes: [1024] } }).finish()),
          encodeFrame(pb.SwarmSessionFrame.encode({ seal: { manifest: randomBytes(100) } }).finish())
        ])],
        [CHUNK_PROTOCOL, randomBytes(5000)],
        [CHUNK_PROTOCOL, encodeFrame(pb.ChunkLinkFrame.encode({ open: { version: 1, manifestId: randomBytes(31) } }).finish())],
        [CHUNK_PROTOCOL, encodeFrame(pb.ChunkLinkFrame.encode({ have: { indices: [1, 2, 3] } }).finish())]
      ]
      for (const [protocol, bytes] of payloads) {
        try {
          const stream = await attacker.dialProtocol(target, protocol, { signal: AbortSignal.timeout(3000) })
          stream.send(bytes)
          await stream.close().catch(() => {})
        } catch { /* a reset is a fine answer */ }
      }
      // A well-formed open for a manifest the host does not have gets a clear refusal.
      const stream = await attacker.dialProtocol(target, CHUNK_PROTOCOL, { signal: AbortSignal.timeout(3000) })
      const ch = streamChannel(stream, 1 << 20)
      await ch.send(pb.ChunkLinkFrame.encode({ open: { version: 1, manifestId: randomBytes(32), sessionId: randomBytes(16) } }).finish())
      const answer = pb.ChunkLinkFrame.decode((await ch.recv(5000)) as Uint8Array)
      expect(answer.error?.code).toBe('NOT_FOUND')
      // So does a link to a live push the host takes no part in.
      const liveStream = await attacker.dialProtocol(target, CHUNK_PROTOCOL, { signal: AbortSignal.timeout(3000) })
      const liveCh = streamChannel(liveStream, 1 << 20)
      await liveCh.send(pb.ChunkLinkFrame.encode({ open: { version: 1, live: true, sessionId: randomBytes(16) } }).finish())
      expect(pb.ChunkLinkFrame.decode((await liveCh.recv(5000)) as Uint8Array).error?.code).toBe('NOT_FOUND')
    } finally {
      await attacker.stop()
    }
    await waitFor('rejections to be counted', async () => {
      const stats = await t1.client.call({ stats: {} })
      const counters = stats.stats?.counters ?? []
      const rejected = counters.filter((c) => (c.name ?? '').startsWith('swarm.rejected.')).reduce((n, c) => n + Number(c.value), 0)
      const named = (name: string): boolean => counters.some((c) => c.name === `swarm.rejected.session.${name}` && Number(c.value) > 0)
      return rejected >= 6 && named('live_capacity') && named('manifest') && named('announce')
    }, 10_000)
    // Still serving: one more push through the swarm works.
    const file = join(cluster.root, 'small.raw')
    writeFileSync(file, randomBytes(3 * 1024 * 1024 + 5))
    await src.client.call({ imageAdd: { path: file, name: 'small' } })
    const r = await src.client.call({ imagePush: { ref: 'small', hosts: 'all' } })
    expect((r.imagePush?.hosts ?? []).map((h) => h.state)).toEqual(['done', 'done', 'done'])
  })

  it('a target opens its seed link before the plan, and lets it go when the session ends without one', async () => {
    const t1 = agents[1] as TestAgent
    const seed = await memberNode()
    const links: Array<{ opened: number, ended?: number }> = []
    try {
      // A stand-in seed that accepts chunk links and only notes when they open and end.
      await seed.handle(CHUNK_PROTOCOL, (stream) => {
        const link: { opened: number, ended?: number } = { opened: Date.now() }
        links.push(link)
        void (async () => {
          try { for await (const _ of stream) { /* the open frame; never answered */ } } catch { /* reset */ }
          link.ended = Date.now()
        })()
      })
      const start = pb.SwarmSessionFrame.encode({ start: { version: 1, sessionId: randomBytes(16), liveCapacity: 10, peers: [{ peerId: peerIdToBytes(seed.peerId), addrs: seed.getMultiaddrs().map((a) => a.bytes), seed: true, name: 'stand-in' }] } }).finish()
      const stream = await seed.dialProtocol(multiaddr(await t1.address()), SESSION_PROTOCOL, { signal: AbortSignal.timeout(3000) })
      const ch = streamChannel(stream, 1 << 20)
      await ch.send(start)
      const ready = pb.SwarmSessionFrame.decode((await ch.recv(5000)) as Uint8Array)
      expect(ready.ready?.chunkCount).toBe(10)
      await waitFor('the target to open its seed link ahead of the plan', async () => links.length === 1, 5000)
      await ch.close()
      await waitFor('the target to close the seed link after the session ended without a plan', async () => links[0]?.ended !== undefined, 5000)
    } finally {
      await seed.stop()
    }
  })

  it('vmesh image add, ls, push (plain progress lines off a terminal) and export from the CLI', async () => {
    const [src, , t2] = agents as [TestAgent, TestAgent, TestAgent]
    const file = join(cluster.root, 'cli.qcow2')
    const data = randomBytes(2 * 1024 * 1024 + 77)
    data.set([0x51, 0x46, 0x49, 0xfb], 0) // qcow2 magic: stored as one disk-base layer all the same
    writeFileSync(file, data)
    const add = await vmesh(src.dataDir, 'image', 'add', file, '--name', 'cli-img')
    expect(add.code).toBe(0)
    const id = add.stdout.trim()
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    const push = await vmesh(src.dataDir, 'image', 'push', 'cli-img', '--hosts', 's2')
    expect(push.code).toBe(0)
    expect(push.stdout).toMatch(/s2\s+\[#+\]\s+100%.*done/)
    expect(push.stdout).toMatch(/1\/1 host\(s\) hold/)
    const ls = await vmesh(src.dataDir, 'image', 'ls', '--json')
    const img = (JSON.parse(ls.stdout) as Array<{ name: string, holders: Array<{ name: string }> }>).find((i) => i.name === 'cli-img')
    await waitFor('s2 to advertise cli-img', async () => {
      const again = JSON.parse((await vmesh(src.dataDir, 'image', 'ls', '--json')).stdout) as Array<{ name: string, holders: Array<{ name: string }> }>
      return again.find((i) => i.name === 'cli-img')?.holders.some((h) => h.name === 's2')
    }, 10_000)
    expect(img?.holders.map((h) => h.name)).toContain('s0')
    const table = await vmesh(src.dataDir, 'image', 'ls')
    expect(table.stdout).toMatch(/cli-img\s+[0-9a-f]{12}\s+2\.0 MiB/)
    const out = join(cluster.root, 'cli-out.qcow2')
    const exp = await vmesh(t2.dataDir, 'image', 'export', id.slice(0, 12), '--out', out)
    expect(exp.code).toBe(0)
    expect(readFileSync(out).equals(data)).toBe(true)
    const bad = await vmesh(src.dataDir, 'image', 'push', 'cli-img')
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/--hosts/)
    // Another chunk size is another manifest of the same bytes; sizes outside the format are refused.
    const big = await vmesh(src.dataDir, 'image', 'add', file, '--name', 'cli-img-2m', '--chunk-size', '2MiB')
    expect(big.code).toBe(0)
    expect(big.stdout.trim()).toMatch(/^[0-9a-f]{64}$/)
    expect(big.stdout.trim()).not.toBe(id)
    const odd = await vmesh(src.dataDir, 'image', 'add', file, '--name', 'cli-img-3m', '--chunk-size', '3MiB')
    expect(odd.code).not.toBe(0)
    expect(odd.stderr).toMatch(/--chunk-size 3MiB must be a power of two from 64KiB to 16MiB/)
    const junk = await vmesh(src.dataDir, 'image', 'add', file, '--chunk-size', '2GB')
    expect(junk.code).not.toBe(0)
    expect(junk.stderr).toMatch(/--chunk-size "2GB" must look like 1MiB or 256KiB/)
  })

  it('the shell lists and pushes images; vmesh image rm drops one from every host that holds it and frees its chunks; a second rm finds nothing', async () => {
    const [src, t1] = agents as [TestAgent, TestAgent]
    const file = join(cluster.root, 'rm.raw')
    const bytes = 3 * 1024 * 1024 + 5
    writeFileSync(file, randomBytes(bytes))
    const add = await vmesh(src.dataDir, 'image', 'add', file, '--name', 'rm-img')
    expect(add.code).toBe(0)
    const id = add.stdout.trim()
    expect((await vmesh(src.dataDir, 'image', 'push', 'rm-img', '--hosts', 's1')).code).toBe(0)

    // The shell lists it and sends it on as the CLI does (commands read from a pipe).
    const shell = await shellLines(src.dataDir, 'image ls', 'image push rm-img --hosts s2', 'image frob')
    expect(shell).toMatch(/rm-img\s+[0-9a-f]{12}\s+3\.0 MiB/)
    expect(shell).toMatch(/1\/1 host\(s\) hold/)
    expect(shell).toMatch(/error: usage: image ls .*\(not "frob"\)/)

    const rm = await vmesh(src.dataDir, 'image', 'rm', 'rm-img', '--json')
    expect(rm.code).toBe(0)
    const report = JSON.parse(rm.stdout) as { id: string, name: string, hosts: Array<{ host: string, held: boolean, manifestRemoved: boolean, freedBytes: number, error: string }> }
    expect(report).toMatchObject({ id, name: 'rm-img' })
    const byHost = new Map(report.hosts.map((h) => [h.host, h]))
    for (const host of ['s0', 's1']) {
      expect(byHost.get(host)).toMatchObject({ held: true, manifestRemoved: true, error: '' })
      expect(byHost.get(host)?.freedBytes).toBeGreaterThanOrEqual(bytes)
    }
    expect(byHost.get('s2')).toMatchObject({ held: true, manifestRemoved: true, error: '' })
    expect(byHost.get('s3')).toMatchObject({ held: false, manifestRemoved: false })

    const ls = JSON.parse((await vmesh(src.dataDir, 'image', 'ls', '--json')).stdout) as Array<{ name: string }>
    expect(ls.some((i) => i.name === 'rm-img')).toBe(false)
    const exp = await vmesh(t1.dataDir, 'image', 'export', id, '--out', join(cluster.root, 'rm-out.raw'))
    expect(exp.code).not.toBe(0)
    expect(exp.stderr).toMatch(/no manifest|no image/)
    const again = await vmesh(src.dataDir, 'image', 'rm', 'rm-img')
    expect(again.code).not.toBe(0)
    expect(again.stderr).toMatch(/no image "rm-img"/)
    // By full id from a host that never held it: every host is asked, none holds it any more.
    const byId = await vmesh((agents[3] as TestAgent).dataDir, 'image', 'rm', id)
    expect(byId.code).not.toBe(0)
    expect(byId.stderr).toMatch(/no alive host holds image/)
  })

  it('a download cap set on a host (vmesh agent --download-rate) holds its transfer to that rate', async () => {
    const [src] = agents as [TestAgent]
    const capped = await cluster.start('s4', { bootstrap: [await src.address()], extraArgs: ['--download-rate', '40mbit'] }) // 5 MB/s
    await waitFor('s0 to see s4 alive', async () => (await src.members()).some((m) => m.name === 's4' && m.status === 'alive'), 30_000)
    const file = join(cluster.root, 'capped.raw')
    writeFileSync(file, randomBytes(8 * 1024 * 1024))
    await src.client.call({ imageAdd: { path: file, name: 'capped' } })
    const t0 = Date.now()
    const r = await src.client.call({ imagePush: { ref: 'capped', hosts: 's4' } })
    const ms = Date.now() - t0
    expect(r.imagePush?.hosts?.[0]?.state).toBe('done')
    // 8 MiB at 5 MB/s is 1.7 s (less the 0.5 MB burst); uncapped, loopback takes a fraction of that.
    expect(ms).toBeGreaterThan(1200)
    await capped.kill('SIGKILL')
  })

  it('a relay passes a chunk on while it still arrives, piece by checked piece (cut-through)', async () => {
    const [src, t1, t2, t3] = agents as [TestAgent, TestAgent, TestAgent, TestAgent]
    // A source held to 80 mbit: each 1 MiB chunk takes ~0.1 s to reach its relay, long enough
    // for the other targets to ask the relay for it while it arrives.
    const slow = await cluster.start('s5', { bootstrap: [await src.address()], extraArgs: ['--upload-rate', '80mbit'] })
    await waitFor('s5 to see the others alive', async () => (await slow.members()).filter((m) => m.status === 'alive').length >= 5, 30_000)
    const file = join(cluster.root, 'relayed.raw')
    const data = randomBytes(12 * 1024 * 1024 + 777)
    writeFileSync(file, data)
    const added = await slow.client.call({ imageAdd: { path: file, name: 'relayed' } })
    const id = added.imageAdd?.image?.id ?? ''
    const r = await slow.client.call({ imagePush: { ref: 'relayed', hosts: 's1,s2,s3' } })
    expect((r.imagePush?.hosts ?? []).map((h) => h.state)).toEqual(['done', 'done', 'done'])
    let passedOn = 0
    for (const [i, a] of [t1, t2, t3].entries()) {
      const out = join(cluster.root, `relayed-${i}.raw`)
      await a.client.call({ imageExport: { ref: id, outPath: out } })
      expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
      const counters = (await a.client.call({ stats: {} })).stats?.counters ?? []
      passedOn += counters.filter((c) => c.name === 'swarm.served_cut_through').reduce((n, c) => n + Number(c.value), 0)
      expect(counters.some((c) => (c.name ?? '').startsWith('swarm.rejected.corrupt') && Number(c.value) > 0)).toBe(false)
    }
    expect(passedOn).toBeGreaterThan(0)
    await slow.kill('SIGKILL')
  })

  it('explains what is wrong with a bad push request', async () => {
    const [src] = agents as [TestAgent]
    await expect(src.client.call({ imagePush: { ref: 'nope', hosts: 'all' } })).rejects.toThrow(/no image "nope"/)
    await expect(src.client.call({ imagePush: { ref: 'disk', hosts: 'zz-unknown' } })).rejects.toThrow(/no host "zz-unknown"/)
    await expect(src.client.call({ imagePush: { ref: 'disk', hosts: '9' } })).rejects.toThrow(/asked for 9 host/)
    await expect(agents[1]?.client.call({ imageExport: { ref: 'disk', outPath: '/tmp/x' } })).rejects.toThrow(/no image "disk"/)
  })
})
