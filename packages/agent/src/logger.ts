// A small leveled logger writing one line per event to stderr, so `vmesh agent` output can be
// piped to journald or a file as it is.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export function isLogLevel (s: string): s is LogLevel {
  return s in order
}

export class Logger {
  constructor (private readonly level: LogLevel = 'info', private readonly out: (line: string) => void = (l) => process.stderr.write(l + '\n')) {}

  log (level: LogLevel, msg: string): void {
    if (order[level] < order[this.level]) return
    this.out(`${new Date().toISOString()} ${level.padEnd(5)} ${msg}`)
  }

  debug (msg: string): void { this.log('debug', msg) }
  info (msg: string): void { this.log('info', msg) }
  warn (msg: string): void { this.log('warn', msg) }
  error (msg: string): void { this.log('error', msg) }
}
