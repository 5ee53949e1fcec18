// @vmesh/swarm: Peer-to-peer multicast transfer of manifests' chunks
export {}
