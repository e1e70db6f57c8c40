/** Logging for the command: human lines by default, pino JSON with --log-format json. Always on stderr. */
import pino from 'pino';

export interface Logger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
  flush(): void;
}

export type LogFormat = 'text' | 'json';

/** A logger writing to `stream` (stderr by default); `quiet` keeps warnings and errors only. */
export function createLogger(format: LogFormat, quiet: boolean, stream: NodeJS.WritableStream = process.stderr): Logger {
  if (format === 'json') {
    const logger = pino({ level: quiet ? 'warn' : 'info', base: { name: 'manifold' } }, pino.destination({ dest: 2, sync: true }));
    return {
      info: (f, m) => logger.info(f, m),
      warn: (f, m) => logger.warn(f, m),
      error: (f, m) => logger.error(f, m),
      flush: () => logger.flush(),
    };
  }
  const line = (level: string, fields: Record<string, unknown>, message: string): void => {
    const extra = Object.entries(fields)
      .filter(([k]) => k !== 'role' && k !== 'event')
      .map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
      .join(' ');
    stream.write(`${new Date().toISOString()} ${level} ${message}${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    info: (f, m) => {
      if (!quiet) line('info', f, m);
    },
    warn: (f, m) => line('warn', f, m),
    error: (f, m) => line('error', f, m),
    flush: () => {},
  };
}
