// @vmesh/hypervisor: QEMU/KVM driver: QMP, overlays, live snapshot, restore, identity, hot-plug
export {}
