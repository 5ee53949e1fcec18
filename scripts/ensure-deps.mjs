#!/usr/bin/env node
// Lets `npm run demo` and `npm test` work on a fresh clone: installs the locked dependencies
// (which also builds the tree) when node_modules is missing or older than package-lock.json.
// Uses only Node built-ins, since it runs before anything is installed.
import { execFileSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const marker = join(root, 'node_modules', '.package-lock.json')
const lock = join(root, 'package-lock.json')
if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) {
  console.log('installing dependencies (npm ci) ...')
  execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' })
}
