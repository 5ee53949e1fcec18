// Where a command's agent is: --peer MULTIADDR (any member, with the cluster key) or the local
// agent's --data-dir. Defaults come from the environment so a shell session can set them once.
import { homedir } from 'node:os'
import { join } from 'node:path'
import { LocalClient, PeerClient } from '@vmesh/agent'
import type { ControlClient } from '@vmesh/agent'

export function defaultDataDir (): string {
  if (process.env.VMESH_DATA_DIR !== undefined && process.env.VMESH_DATA_DIR !== '') return process.env.VMESH_DATA_DIR
  return process.getuid?.() === 0 ? '/var/lib/vmesh' : join(homedir(), '.vmesh')
}

export interface TargetOptions {
  'data-dir'?: string
  peer?: string
  'cluster-key'?: string
}

export const targetOptionSpec = {
  'data-dir': { type: 'string' },
  peer: { type: 'string' },
  'cluster-key': { type: 'string' }
} as const

export async function clientFor (o: TargetOptions): Promise<ControlClient> {
  if (o.peer !== undefined) {
    const key = o['cluster-key'] ?? process.env.VMESH_CLUSTER_KEY
    if (key === undefined || key === '') throw new Error('--peer needs the cluster key: pass --cluster-key FILE or set VMESH_CLUSTER_KEY')
    return await PeerClient.create(o.peer, key)
  }
  return new LocalClient(o['data-dir'] ?? defaultDataDir())
}
