// @vmesh/store: Content-addressed chunk store and snapshot manifests
export {}
