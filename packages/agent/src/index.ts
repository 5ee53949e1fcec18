// @vmesh/agent: the agent that runs on every host, its control API server and client.
export { Agent, AGENT_VERSION, defaultListen, readAgentConfigFile, validName } from './agent.js'
export type { AgentOptions } from './agent.js'
export { LocalClient, PeerClient, AgentError } from './control-client.js'
export type { ControlClient, ControlResponse } from './control-client.js'
export { CONTROL_PROTOCOL, CONTROL_SOCKET } from './control-protocol.js'
export { Logger, isLogLevel } from './logger.js'
export type { LogLevel } from './logger.js'
export type { SnapshotEntry, SnapshotUser } from './snapshot-catalog.js'
