/** Sizes and durations with units, as the command line and pipeline files write them. */

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses `1MiB`, `512KB`, `64k`, `1048576` into bytes (KiB/MiB/GiB and k/m/g are powers of
 * 1024, KB/MB/GB powers of 1000). Returns undefined when the text is not a size.
 */
export function parseBytes(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? Math.round(text) : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = BYTE_UNITS[match[2]!.toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(match[1]) * unit);
}

/** The duration units, as messages list them. */
export const DURATION_UNITS_TEXT = 'ms, s, m, h or d';

/**
 * Parses `500ms`, `30s`, `5m`, `12h`, `1d` and compound forms such as `1h30m` into
 * milliseconds. Text needs a unit: `"30"` could mean 30 ms or 30 s, so it is not a duration
 * (see {@link isUnitless}); `"0"` is the same in every unit and needs none. A number (a pipeline
 * file's YAML number) is milliseconds.
 * Returns undefined when the value is not a duration.
 */
export function parseDuration(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? text : undefined;
  const trimmed = text.trim();
  if (/^0+(?:\.0+)?$/.test(trimmed)) return 0;
  const part = /(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d)/giy;
  let total = 0;
  let consumed = 0;
  for (let m = part.exec(trimmed); m; m = part.exec(trimmed)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!;
    consumed = part.lastIndex;
  }
  return consumed === trimmed.length && consumed > 0 ? total : undefined;
}

/** Whether `text` is a number without a unit: a duration written so is refused, with a hint. */
export function isUnitless(text: unknown): boolean {
  return typeof text === 'string' && /^\s*-?\d+(?:\.\d+)?\s*$/.test(text) && parseDuration(text) === undefined;
}

/** `12.3 MB`-style rendering for progress lines. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : value.toFixed(1)} ${units[i]}`;
}

/** `3m 5s`-style rendering of a duration in milliseconds, for log lines (whole seconds from 1 s up). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}s`);
  return parts.join(' ');
}
