/** How the page writes numbers (short, with units, the same everywhere), and table rows of them. */

const whole = new Intl.NumberFormat("en", { maximumFractionDigits: 0 })
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 })

export function formatCount(value: number): string {
  return value < 100_000 ? whole.format(value) : compact.format(value)
}

export function formatRate(perSecond: number): string {
  if (perSecond === 0) return "0"
  return perSecond < 10 ? perSecond.toFixed(1) : formatCount(Math.round(perSecond))
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"]

export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${BYTE_UNITS[unit]}`
}

/** A latency in seconds, in the unit that reads best. */
export function formatLatency(seconds: number | null): string {
  if (seconds === null) return "–"
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)} µs`
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`
  return `${seconds.toFixed(1)} s`
}

export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`
}

/** How long ago a time was, from the server's clock (`nowMs`), so a skewed browser clock does not matter. */
export function formatAgo(atMs: number | null, nowMs: number): string {
  if (atMs === null) return "–"
  const seconds = Math.max(0, (nowMs - atMs) / 1000)
  return seconds < 1 ? "now" : `${formatDuration(seconds)} ago`
}

/** A table row of text cells; numeric ones are right-aligned. */
export function tableRow(cells: readonly (readonly [text: string, numeric: boolean])[]): HTMLTableRowElement {
  const tr = document.createElement("tr")
  for (const [text, numeric] of cells) {
    const td = document.createElement("td")
    td.textContent = text
    if (numeric) td.className = "num"
    tr.append(td)
  }
  return tr
}
