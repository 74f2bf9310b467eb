/** "5s", "500ms", "2m", "1.5s", "250" (milliseconds) -> milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(text.trim());
  if (!m) throw new Error(`${what}: not a duration: '${text}' (e.g. 5s, 500ms, 1m)`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms').toLowerCase() as 'ms' | 's' | 'm' | 'h'];
  return Math.round(parseFloat(m[1]) * mult);
}
