#!/usr/bin/env node
// Generates the wire codecs from proto/*.proto: proto/ is the one source of truth for every
// message on the wire. Output goes to packages/wire/gen/ (static JS + .d.ts), never edited by hand.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, statSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const protoDir = join(root, 'proto')
const outDir = join(root, 'packages', 'wire', 'gen')
const outJs = join(outDir, 'vmesh.js')
const outDts = join(outDir, 'vmesh.d.ts')
const bin = (name) => join(root, 'node_modules', '.bin', name)

const protos = readdirSync(protoDir).filter((f) => f.endsWith('.proto')).sort().map((f) => join(protoDir, f))
const newest = Math.max(...protos.map((f) => statSync(f).mtimeMs), statSync(fileURLToPath(import.meta.url)).mtimeMs)
if (existsSync(outJs) && existsSync(outDts) && statSync(outDts).mtimeMs >= newest && !process.argv.includes('--force')) {
  process.exit(0)
}
mkdirSync(outDir, { recursive: true })
execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--no-beautify', '--force-number', '-o', outJs, ...protos], { stdio: 'inherit' })
// protobufjs ships no ESM exports map: name the file so Node's ESM resolver finds it.
// 64-bit fields are plain numbers in vmesh (see packages/wire/src/codecs.ts); the prototype
// defaults are evaluated when this module loads, before codecs.ts can switch Long off, so an
// absent uint64 would otherwise decode as a Long object.
const js = readFileSync(outJs, 'utf8')
  .replace(/from "protobufjs\/minimal"/g, 'from "protobufjs/minimal.js"')
  .replace(/\$util\.Long \? \$util\.Long\.fromBits\(0,0,(true|false)\) : 0/g, '0')
writeFileSync(outJs, js)
execFileSync(bin('pbts'), ['--no-comments', '-o', outDts, outJs], { stdio: 'inherit' })
console.log(`wire: generated ${protos.length} proto file(s) -> packages/wire/gen/`)
