// Whether live pre-copy migration keeps every guest write on this QEMU, for snapshots.
//
// QEMU before 9.0 loses guest writes in pre-copy under TCG: the fast path that syncs the dirty
// bitmap 64 pages at a time (taken for every RAM block here: blocks start on such a boundary and
// our sizes are whole MiB) clears the migration dirty bits without resetting the vCPUs' TCG TLB
// entries, so a vCPU that already had a writable entry for a page keeps storing to it without
// marking it dirty again, and the page is never resent. Fixed upstream by QEMU commit 03bfc2188f
// ("physmem: Fix migration dirty bitmap coherency with TCG memory access", in 9.0). Measured here
// on 7.2: pages differing between the stopped source and the snapshot in about 4 of 10 pre-copy
// snapshots, and a clone that oopsed or hung in every snapshot that had them badly enough (see the
// README). KVM tracks dirty pages in the kernel and is not affected; neither are the background
// snapshot (userfaultfd write protection, no dirty bitmap) nor a copy with the guest stopped.

export interface QemuVersion {
  major: number
  minor: number
  micro: number
}

/** Why pre-copy would give an inconsistent snapshot with this accelerator and QEMU, or undefined if it is safe. */
export function precopyUnsafeReason(accel: string, version: QemuVersion): string | undefined {
  if (accel !== 'tcg') return undefined
  if (version.major >= 9) return undefined
  const v = `${version.major}.${version.minor}.${version.micro}`
  return `live pre-copy loses guest writes under TCG with QEMU ${v} (dirty-bitmap fast path leaves TCG TLB entries writable; fixed in QEMU 9.0, commit 03bfc2188f), so its snapshots can be inconsistent; use snapshotMode auto (background snapshot) or stopped`
}
