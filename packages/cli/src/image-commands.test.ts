import { describe, expect, it } from 'vitest'
import { imageRemoveReport } from './image-commands.js'

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
  })
})
