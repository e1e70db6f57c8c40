/** The progress line on stderr while the command runs (only when stderr is a terminal). */
import { redactText } from '../core/errors.js';
import { escapeControls } from './log.js';
import { unsettled, type Monitor } from './monitor.js';
import { formatBytes } from './units.js';

/** Renders one progress line from the monitor's counters; `rate` is messages/s since the last tick. */
export function progressLine(monitor: Monitor, rate: number): string {
  const s = monitor.flow.stats;
  const parts = [
    `${Math.round(rate).toLocaleString('en-US')} msg/s`,
    `in ${s.messages.toLocaleString('en-US')} (${formatBytes(s.bytes)})`,
    `acked ${s.acks.toLocaleString('en-US')}`,
    `unacked ${unsettled(s).toLocaleString('en-US')}`,
  ];
  if (s.redeliveries > 0) parts.push(`redelivered ${s.redeliveries.toLocaleString('en-US')}`);
  if (s.deadLettered > 0) parts.push(`dead-lettered ${s.deadLettered.toLocaleString('en-US')}`);
  if (s.lost > 0) parts.push(`lost ${s.lost.toLocaleString('en-US')}`);
  if (s.nacks > 0) parts.push(`nacked ${s.nacks.toLocaleString('en-US')}`);
  if (monitor.counts.reconnects > 0) parts.push(`reconnects ${monitor.counts.reconnects}`);
  const { connectors } = monitor.readiness();
  for (const c of connectors) {
    // What /readyz would say, in a word: a connector that is not ready names itself and why.
    if (c.state !== 'connected') parts.push(`${c.role} ${c.state}${c.lastError?.reason ? ` (${c.lastError.reason})` : ''}`);
    else if (c.retrying) parts.push(`${c.role} retrying`);
    if (c.backlog) parts.push(`S3 files waiting ${c.backlog.files} (${formatBytes(c.backlog.bytes)})`);
    if (c.leasesHeld !== undefined) parts.push(`leases ${c.leasesHeld}`);
    if (c.lag) parts.push(`lag ${Object.values(c.lag).reduce((a, b) => a + b, 0).toLocaleString('en-US')}`);
  }
  return parts.join(' | ');
}

/**
 * Redraws the progress line every `intervalMs` on a TTY; returns a stop function that clears it. The line
 * carries a system's own words (a connector's last error reason): it goes through `redact` (the command's
 * secrets) and its control characters are escaped, as log lines' are.
 */
export function startProgress(monitor: Monitor, stream: NodeJS.WriteStream, intervalMs = 1000, redact: (text: string) => string = redactText): () => void {
  let last = monitor.flow.stats.messages;
  let lastAt = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const rate = ((monitor.flow.stats.messages - last) * 1000) / Math.max(1, now - lastAt);
    last = monitor.flow.stats.messages;
    lastAt = now;
    stream.write(`\r\x1b[K${escapeControls(redact(progressLine(monitor, rate)))}`);
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    stream.write('\r\x1b[K');
  };
}
