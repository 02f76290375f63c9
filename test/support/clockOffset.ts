/**
 * Makes this process's clock run ahead (or behind): with `--clock-offset <ms>` on the command
 * line, `Date.now` — which Effect's live `Clock` reads — answers the real time plus that
 * offset. A worker imports this module first, before anything imports `effect`, so every
 * clock reading of the process is skewed. Without the flag it changes nothing.
 */
const flag = process.argv.indexOf("--clock-offset")

/** The offset applied to `Date.now` (0 without the flag). */
export const clockOffsetMillis: number = flag >= 0 ? Number(process.argv[flag + 1]) : 0

if (!Number.isFinite(clockOffsetMillis)) throw new Error(`--clock-offset needs a number of milliseconds, got ${process.argv[flag + 1]}`)
if (clockOffsetMillis !== 0) {
  const real = Date.now
  Date.now = () => real() + clockOffsetMillis
}
