import { describe, expect, it } from 'vitest'
import type { ControlClient } from '@vmesh/agent'
import type { vmesh } from '@vmesh/wire'
import { imageRemoveReport, imageShellCommand } from './image-commands.js'

const ID = 'ab'.repeat(32)

describe('vmesh image rm report', () => {
  it('a line per host, and success only when every host that held the image dropped it', () => {
    const ok = imageRemoveReport({
      id: ID,
      name: 'ubuntu',
      hosts: [
        { host: 'a', held: true, manifestRemoved: true, freedBytes: 3 * 1024 * 1024 },
        { host: 'b', held: false }
      ]
    })
    expect(ok.ok).toBe(true)
    expect(ok.text).toMatch(/^a\s+removed, 3\.0 MiB freed$/m)
    expect(ok.text).toMatch(/^b\s+did not hold it$/m)
    expect(ok.text).toMatch(/image ubuntu \(abababababab\) removed from 1 of 1 host\(s\) that held it/)

    const kept = imageRemoveReport({ id: ID, hosts: [{ host: 'a', held: true, manifestRemoved: true }, { host: 'c', held: true, error: 'c is receiving this image right now' }] })
    expect(kept.ok).toBe(false)
    expect(kept.text).toMatch(/^c\s+kept: c is receiving this image right now$/m)
    expect(kept.text).toMatch(/removed from 1 of 2 host\(s\)/)

    // Removed, with its disk file left under VMs based on it: removed all the same.
    const based = imageRemoveReport({ id: ID, hosts: [{ host: 'a', held: true, manifestRemoved: true, freedBytes: 1024, keptFor: ['db', 'web'] }] })
    expect(based.ok).toBe(true)
    expect(based.text).toMatch(/^a\s+removed, 1\.0 KiB freed; its disk file stays for db, web \(deleted once they are destroyed\)$/m)
  })
})

describe('image commands in the shell', () => {
  /** A stand-in agent that answers image rm and records what it was asked. */
  const agent = (): { client: ControlClient, asked: vmesh.v1.IControlRequest[] } => {
    const asked: vmesh.v1.IControlRequest[] = []
    const call = async (req: vmesh.v1.IControlRequest): Promise<vmesh.v1.IControlResponse> => {
      asked.push(req)
      return { imageRemove: { id: ID, name: 'ubuntu', hosts: [{ host: 'a', held: true, manifestRemoved: true, freedBytes: 1024 }] } }
    }
    return { client: { call } as unknown as ControlClient, asked }
  }

  it('rm asks the connected agent and prints its report', async () => {
    const { client, asked } = agent()
    const text = await imageShellCommand(['rm', 'ubuntu'], client)
    expect(asked).toEqual([{ imageRemove: { ref: 'ubuntu' } }])
    expect(text).toMatch(/image ubuntu \(abababababab\) removed from 1 of 1 host\(s\)/)
  })

  it('says what it takes on a wrong line, without asking the agent', async () => {
    const { client, asked } = agent()
    await expect(imageShellCommand(['add', 'f'], client)).rejects.toThrow(/usage: image ls .* \(not "add"\)/)
    await expect(imageShellCommand(['push', 'ubuntu'], client)).rejects.toThrow(/--hosts/)
    await expect(imageShellCommand(['rm'], client)).rejects.toThrow(/usage: image rm ID\|NAME/)
    await expect(imageShellCommand(['ls', 'x'], client)).rejects.toThrow(/takes no arguments/)
    expect(asked).toEqual([])
  })
})
