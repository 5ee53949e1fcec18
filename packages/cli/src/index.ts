// @vmesh/cli: the vmesh command and its interactive shell.
export { main } from './main.js'
export { Shell, complete, splitWords } from './shell.js'
export { memberJson, membersTable } from './format.js'
export type { MemberJson } from './format.js'
