import type { LoggerService } from '@nestjs/common';

/** A Nest logger that keeps every line it is given, for tests that check what gets logged. */
export function captureLogs(): { logger: LoggerService; lines: string[] } {
  const lines: string[] = [];
  const keep = (message: unknown, ...rest: unknown[]) => lines.push([message, ...rest].map(String).join(' '));
  return { logger: { log: keep, warn: keep, error: keep, debug: keep, verbose: keep }, lines };
}
