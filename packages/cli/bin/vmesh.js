#!/usr/bin/env node
// Entry point of the `vmesh` command: the polyfill must load before libp2p.
import '@vmesh/wire/polyfill'
import { main } from '../dist/main.js'

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err) => {
  console.error(`vmesh: ${err instanceof Error ? err.message : String(err)}`)
  process.exitCode = 1
})
