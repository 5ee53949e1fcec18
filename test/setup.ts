// libp2p v3 needs Promise.withResolvers, which Node 20 lacks.
import '@vmesh/wire/polyfill'
