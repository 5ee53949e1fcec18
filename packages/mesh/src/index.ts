// @vmesh/mesh: libp2p node, SWIM membership and the gossiped cluster view
export {}
