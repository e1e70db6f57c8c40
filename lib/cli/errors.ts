/** The command line's own error: bad usage or configuration, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  override get name(): string {
    return 'UsageError';
  }
}

/**
 * `text` as the subject of a message, with its colon: `amqp://host/?queue=q:`. A subject that ends
 * with a colon itself (`stdin:`, `kinesis:`) is quoted, so that a message never reads `stdin:: ...`.
 */
export function subject(text: string): string {
  return text.endsWith(':') ? `${JSON.stringify(text)}:` : `${text}:`;
}

/** Exit codes of the `manifold` command (also in --help and the README). */
export const ExitCodes = {
  /** The pipeline ended: the source ended, or a signal stopped it gracefully. */
  OK: 0,
  /** The pipeline failed at run time (a connection that could not be restored, a fatal error). */
  FAILED: 1,
  /** Bad usage or configuration: nothing was connected. */
  USAGE: 2,
  /**
   * Messages were lost: they could not be delivered, their source cannot deliver them again (stdin, a
   * file, WebSocket), and there was no dead-letter sink to take them (or it refused them). The count is printed.
   */
  LOST: 4,
  /** A second signal stopped it at once; messages in flight were not delivered. */
  ABORTED: 130,
} as const;
