// SWIM's precedence rules for claims about a member's state, as a pure function. A claim is a
// state at an incarnation. Only the member itself raises its incarnation, so "alive at a higher
// incarnation" is how it refutes suspicion or comes back after death.

export type MemberStatus = 'alive' | 'suspect' | 'dead' | 'left'

export interface Claim {
  status: MemberStatus
  incarnation: number
}

/** Does `next` replace `current` in the view? */
export function supersedes (next: Claim, current: Claim | undefined): boolean {
  if (current === undefined) return true
  const newer = next.incarnation > current.incarnation
  const same = next.incarnation === current.incarnation
  switch (next.status) {
    case 'alive':
      return newer
    case 'suspect':
      // Suspicion overrides "alive" at the same incarnation: refuting it needs a higher one.
      return newer || (same && current.status === 'alive')
    case 'dead':
      return newer || (same && (current.status === 'alive' || current.status === 'suspect'))
    case 'left':
      // A member that left also "died": left at the same incarnation is the better explanation.
      return newer || (same && current.status !== 'left')
  }
}

/** Precedence used only to order statuses for display. */
export const statusOrder: Record<MemberStatus, number> = { alive: 0, suspect: 1, dead: 2, left: 3 }
