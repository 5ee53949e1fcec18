import { describe, it, expect, vi } from 'vitest'
import { FailureDetector } from './failure-detector.js'
import type { ProbeTransport } from './failure-detector.js'
import { Awareness } from './awareness.js'
import { meshConfig } from './config.js'

function transport (over: Partial<ProbeTransport>): ProbeTransport & { suspected: string[] } {
  const suspected: string[] = []
  return {
    candidates: () => ['a', 'b', 'c', 'd'],
    ping: async () => 'ok',
    pingVia: async () => false,
    suspect: (id) => { suspected.push(id) },
    suspected,
    ...over
  }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 10; i++) await Promise.resolve() }

describe('FailureDetector', () => {
  it('does not suspect a member that answers a direct ping, and lowers the health score', async () => {
    const aw = new Awareness()
    aw.apply(2)
    const t = transport({})
    new FailureDetector(meshConfig(), t, aw).probeNow('a')
    await settle()
    expect(t.suspected).toEqual([])
    expect(aw.health).toBe(1)
  })

  it('asks k helpers after a timeout and does not suspect if one reaches the target', async () => {
    const aw = new Awareness()
    const pingVia = vi.fn(async (helper: string) => helper === 'c')
    const t = transport({ ping: async () => 'timeout', pingVia, candidates: () => ['a', 'b', 'c', 'd'] })
    new FailureDetector(meshConfig({ indirectProbes: 3 }), t, aw).probeNow('a')
    await settle()
    expect(pingVia).toHaveBeenCalledTimes(3)
    expect(pingVia.mock.calls.every(([h, target]) => h !== 'a' && target === 'a')).toBe(true)
    expect(t.suspected).toEqual([])
    expect(aw.health).toBe(1) // we were the slow one
  })

  it('suspects when the direct and every indirect probe fail', async () => {
    const t = transport({ ping: async () => 'timeout', pingVia: async () => false })
    new FailureDetector(meshConfig(), t, new Awareness()).probeNow('b')
    await settle()
    expect(t.suspected).toEqual(['b'])
  })

  it('suspects at once, without indirect probes, when the connection is refused', async () => {
    const pingVia = vi.fn(async () => true)
    const t = transport({ ping: async () => 'refused', pingVia })
    new FailureDetector(meshConfig(), t, new Awareness()).probeNow('b')
    await settle()
    expect(pingVia).not.toHaveBeenCalled()
    expect(t.suspected).toEqual(['b'])
  })

  it('scales the probe timeout by the health score', async () => {
    const aw = new Awareness()
    aw.apply(3)
    const ping = vi.fn(async () => 'ok' as const)
    new FailureDetector(meshConfig({ probeTimeoutMs: 100 }), transport({ ping }), aw).probeNow('a')
    await settle()
    expect(ping).toHaveBeenCalledWith('a', 400)
  })

  it('probes every candidate once per round', async () => {
    vi.useFakeTimers()
    try {
      const seen: string[] = []
      const t = transport({ ping: async (id) => { seen.push(id); return 'ok' } })
      const fd = new FailureDetector(meshConfig({ probeIntervalMs: 10 }), t, new Awareness())
      fd.start()
      await vi.advanceTimersByTimeAsync(40)
      fd.stop()
      expect([...seen].sort()).toEqual(['a', 'b', 'c', 'd'])
    } finally {
      vi.useRealTimers()
    }
  })
})
