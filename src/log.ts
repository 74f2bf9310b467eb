/** One logger for the process, on stderr (stdout belongs to command output such as --json). */
import * as winston from 'winston';

export const log = winston.createLogger({
  level: process.env.ISG_LOG_LEVEL ?? 'info',
  format: winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf((i) => `${String(i.timestamp)} ${i.level} ${String(i.message)}`),
  ),
  transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
});

export function setLogLevel(level: string): void {
  if (!['error', 'warn', 'info', 'verbose', 'debug'].includes(level))
    throw new Error(`unknown log level '${level}' (error, warn, info, verbose, debug)`);
  log.level = level;
}
