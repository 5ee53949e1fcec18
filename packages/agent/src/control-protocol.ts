// Names and bounds of the control API, shared by the server and the client.
export const CONTROL_PROTOCOL = '/vmesh/control/1.0.0'
export const CONTROL_SOCKET = 'control.sock'
/** Requests are small; a larger frame is garbage or an attack. */
export const MAX_REQUEST_BYTES = 64 * 1024
/** Replies carry the whole view (4096 members at most). */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024
/** How long a connected client may take to send its request. */
export const REQUEST_TIMEOUT_MS = 10_000
/** Concurrent control connections served; more are refused rather than queued. */
export const MAX_CONTROL_CONNECTIONS = 64
