// `vmesh image rm` and the disk file `vmesh create --image NAME` writes out of an image: one
// agent process, real QEMU (TCG) VMs based on an image from the store. Removing the image keeps
// the file while a VM's disk chain uses it and says for whom; destroying the last such VM deletes
// it. Without VMs, rm deletes it at once and counts it in the bytes freed. Skips only without qemu.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TestCluster, missingQemu } from './helpers/agents.js'
import type { TestAgent } from './helpers/agents.js'

const skipReason = missingQemu()
if (skipReason !== undefined) console.log(`image disk e2e skipped: ${skipReason}`)

const IMAGE_BYTES = 4 << 20

describe.skipIf(skipReason !== undefined)('vmesh image rm and the disk files of VMs based on an image', () => {
  const cluster = new TestCluster()
  let agent: TestAgent

  /** Adds a fresh raw image (random bytes: nothing to boot, QEMU's firmware waits) and returns its id. */
  async function addImage (name: string): Promise<string> {
    const file = join(agent.dataDir, `${name}.raw`)
    await writeFile(file, randomBytes(IMAGE_BYTES))
    const id = (await agent.client.call({ imageAdd: { path: file, name } })).imageAdd?.image?.id ?? ''
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    return id
  }

  async function removeImage (ref: string) {
    const r = (await agent.client.call({ imageRemove: { ref } })).imageRemove
    expect(r?.hosts).toHaveLength(1)
    return r!.hosts![0]!
  }

  beforeAll(async () => {
    [agent] = await cluster.startMany(1, 'd') as [TestAgent]
  }, 60_000)

  afterAll(async () => {
    for (const v of (await agent?.client.call({ vmList: {} }).catch(() => undefined))?.vmList?.vms ?? []) {
      await agent.client.call({ vmDestroy: { vm: v.name ?? '' } }).catch(() => {})
    }
    await cluster.stop()
  }, 60_000)

  it('keeps the disk file for the VMs based on it, and deletes it after the last is destroyed', async () => {
    const id = await addImage('base')
    const disk = join(agent.dataDir, 'images', `${id}.img`)
    for (const vm of ['vm-a', 'vm-b']) {
      const created = await agent.client.call({ vmCreate: { name: vm, image: 'base', cpus: 1, memMib: 64 } })
      expect(created.error?.message ?? '').toBe('')
    }
    expect(existsSync(disk)).toBe(true)

    const r = await removeImage('base')
    expect(r.error).toBe('')
    expect(r.manifestRemoved).toBe(true)
    expect(r.keptFor).toEqual(['vm-a', 'vm-b'])
    expect(existsSync(disk)).toBe(true)
    const images = (await agent.client.call({ imageList: {} })).imageList?.images ?? []
    expect(images.map((i) => i.id)).not.toContain(id)
    const running = (await agent.client.call({ vmList: {} })).vmList?.vms ?? []
    expect(running.filter((v) => v.state === 'running').map((v) => v.name).sort()).toEqual(['vm-a', 'vm-b'])

    await agent.client.call({ vmDestroy: { vm: 'vm-a' } })
    expect(existsSync(disk)).toBe(true)
    await agent.client.call({ vmDestroy: { vm: 'vm-b' } })
    expect(existsSync(disk)).toBe(false)
  }, 120_000)

  it('deletes the disk file with the image when no VM uses it, and counts it in the bytes freed', async () => {
    const id = await addImage('spare')
    const disk = join(agent.dataDir, 'images', `${id}.img`)
    await agent.client.call({ vmCreate: { name: 'vm-c', image: 'spare', cpus: 1, memMib: 64 } })
    await agent.client.call({ vmDestroy: { vm: 'vm-c' } })
    // The image is still held: its disk file stays for the next VM.
    expect(existsSync(disk)).toBe(true)

    const r = await removeImage(id)
    expect(r.manifestRemoved).toBe(true)
    expect(r.keptFor ?? []).toEqual([])
    expect(existsSync(disk)).toBe(false)
    // The chunks (4 MiB) and the disk file written out of them (4 MiB).
    expect(Number(r.freedBytes)).toBeGreaterThanOrEqual(2 * IMAGE_BYTES)
  }, 120_000)
})
