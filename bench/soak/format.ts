export const MiB = 1024 * 1024

export const fmt = {
  mib: (bytes: number): string => (Number.isFinite(bytes) ? (bytes / MiB).toFixed(1) : "-"),
  ms: (value: number): string =>
    !Number.isFinite(value) ? "-" : value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2),
  pct: (value: number): string => (Number.isFinite(value) ? value.toFixed(0) : "-"),
  int: (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "-"),
  rate: (value: number): string =>
    !Number.isFinite(value)
      ? "-"
      : value >= 10_000
        ? `${(value / 1000).toFixed(0)}k`
        : value >= 1000
          ? `${(value / 1000).toFixed(1)}k`
          : value.toFixed(0),
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)))
  const line = (cells: readonly string[]): string => cells.map((cell, column) => cell.padStart(widths[column]!)).join("  ")
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n")
}
