import { median, summarize } from "../lib/stats.ts"
import { fmt, MiB } from "./format.ts"
import type { SoakOptions } from "./options.ts"
import type { Sample, Series } from "./sample.ts"

export interface Verdict {
  ok: boolean
  rssFlat: boolean
  rssWithinBound: boolean
  latencyStable: boolean
  lines: string[]
  /** RSS − idle RSS, per counted byte, over the last third. */
  rssPerCountedByte: number
  steadyRss: number
  maxRss: number
  bound: number
}

export function judge(
  samples: readonly Sample[],
  series: Record<string, Series>,
  options: SoakOptions,
  cap: number | null,
  idleRss: number,
): Verdict {
  const lines: string[] = []
  const tail = samples.slice(samples.length - Math.max(2, Math.ceil(samples.length / 3)))
  const tailRss = tail.map((s) => s.rss)
  const minTail = Math.min(...tailRss)
  const maxTail = Math.max(...tailRss)
  const spread = ((maxTail - minTail) / minTail) * 100
  // Least-squares slope over the last third, MiB per minute.
  const n = tail.length
  const meanT = tail.reduce((sum, s) => sum + s.t, 0) / n
  const meanR = tail.reduce((sum, s) => sum + s.rss, 0) / n
  const slope =
    tail.reduce((sum, s) => sum + (s.t - meanT) * (s.rss - meanR), 0) /
    Math.max(
      1e-9,
      tail.reduce((sum, s) => sum + (s.t - meanT) ** 2, 0),
    )
  const rssFlat = samples.length >= 2 && spread <= options.rssTolerance
  lines.push(
    `RSS flat: ${rssFlat ? "yes" : "NO"} — the last ${n} samples (t ≥ ${tail[0]?.t.toFixed(0)} s) lie within ${spread.toFixed(1)} % of each other ` +
      `(${fmt.mib(minTail)}–${fmt.mib(maxTail)} MiB; tolerance ${options.rssTolerance} %), trend ${((slope * 60) / MiB).toFixed(2)} MiB/min`,
  )

  const maxRss = Math.max(...samples.map((s) => Math.max(s.rss, s.hwm)))
  const bound = cap === null ? Number.POSITIVE_INFINITY : cap * options.rssFactor + options.rssSlack
  const rssWithinBound = maxRss <= bound
  lines.push(
    `RSS bound: ${rssWithinBound ? "yes" : "NO"} — peak ${fmt.mib(maxRss)} MiB (VmHWM included) vs cap ${cap === null ? "none" : `${fmt.mib(cap)} MiB`} x ${options.rssFactor} + ${fmt.mib(options.rssSlack)} MiB = ${fmt.mib(bound)} MiB`,
  )
  const steadyRss = median(tailRss)
  const steadyCounted = median(tail.map((s) => s.countedBytes))
  const rssPerCountedByte = (steadyRss - idleRss) / steadyCounted
  lines.push(
    `RSS vs store: idle ${fmt.mib(idleRss)} MiB, steady ${fmt.mib(steadyRss)} MiB with ${fmt.mib(steadyCounted)} MiB counted against the cap ` +
      `(${fmt.int(median(tail.map((s) => s.storedMessages)))} messages): RSS ≈ idle + ${rssPerCountedByte.toFixed(2)} x counted` +
      (cap === null
        ? ""
        : `; at the cap: ≈ ${fmt.mib(idleRss + rssPerCountedByte * cap)} MiB, i.e. cap x ${(steadyRss / cap).toFixed(2)} measured`),
  )
  const filled = cap !== null && tail.every((s) => s.countedBytes >= cap * 0.9)
  if (cap !== null && !filled)
    lines.push(
      `  note: the store did not stay near its cap over the last third (counted ${fmt.mib(Math.min(...tail.map((s) => s.countedBytes)))} MiB at least): another limit binds first (messages per topic, age), or the load was too slow to fill it`,
    )

  // Latency: intervals while retention dropped vs the baseline. Intervals in which other
  // processes on the machine used more than --contention % of a core are "contended": a spike
  // there may be theirs, so it is reported but does not fail the verdict.
  let latencyStable = true
  const contended = (s: Sample): boolean => s.otherCpuPercent > options.contention
  const clean = samples.filter((s) => !contended(s))
  const droppingIntervals = samples.filter((s) => s.dropping)
  const contendedCount = samples.filter(contended).length
  if (contendedCount > 0) {
    lines.push(
      `contention: in ${contendedCount} of ${samples.length} intervals other processes used more than ${options.contention} % of a core ` +
        `(up to ${fmt.pct(Math.max(...samples.map((s) => s.otherCpuPercent)))} %); latency there is not the broker's alone`,
    )
  }
  for (const name of ["deliver", "ack", "get", "ping"] as const) {
    const values = (list: readonly Sample[]): number[] => list.map((s) => s[name].p999).filter(Number.isFinite)
    // Baseline: the lower of the median p99.9 of the intervals without dropping (the fill phase,
    // which also holds the warm-up, and any later quiet interval) and the median p99.9 of all
    // intervals, so that a slow warm-up does not hide spikes and steady dropping is measured
    // against itself; uncontended intervals only, when there are any.
    const pool = clean.length > 0 ? clean : samples
    const quiet = values(pool.filter((s) => !s.dropping))
    const overall = median(values(pool))
    const baseline = quiet.length > 0 ? Math.min(median(quiet), overall) : overall
    const spikes = droppingIntervals.filter((s) => s[name].p999 > baseline * options.spikeFactor && s[name].p999 > baseline + 10)
    const cleanSpikes = spikes.filter((s) => !contended(s))
    const contendedSpikes = spikes.filter(contended)
    const whole = series[name]!
    const d = summarize(whole.dropping)
    const q = summarize(whole.quiet)
    const label = { deliver: "put→deliver", ack: "putAck RTT", get: "get RTT", ping: "ping RTT" }[name]
    if (cleanSpikes.length > 0) latencyStable = false
    const at = (list: readonly Sample[]): string => list.map((s) => `${s.t.toFixed(0)} s: ${fmt.ms(s[name].p999)} ms`).join(", ")
    const verdictText =
      spikes.length === 0
        ? "no spike"
        : [
            cleanSpikes.length === 0
              ? "no spike in uncontended intervals"
              : `SPIKE in ${cleanSpikes.length} of ${droppingIntervals.length} dropping intervals (${at(cleanSpikes)})`,
            contendedSpikes.length === 0
              ? ""
              : `; ${contendedSpikes.length} more in contended intervals, inconclusive (${at(contendedSpikes)})`,
          ].join("")
    lines.push(
      `${label} p99.9: ${verdictText} — ` +
        `baseline ${fmt.ms(baseline)} ms (median interval p99.9${clean.length > 0 && clean.length < samples.length ? " of uncontended intervals" : ""}: ${fmt.ms(overall)} ms overall, ` +
        `${quiet.length > 0 ? `${fmt.ms(median(quiet))} ms over ${quiet.length} non-dropping intervals` : "no non-dropping interval"}), ` +
        `pooled while dropping p99.9 ${fmt.ms(d.p999)} / max ${fmt.ms(d.max)} ms (n=${d.n}), while not dropping p99.9 ${fmt.ms(q.p999)} / max ${fmt.ms(q.max)} ms (n=${q.n})`,
    )
  }
  lines.push(
    `  (a spike: a dropping interval's p99.9 over ${options.spikeFactor} x baseline and over baseline + 10 ms; baseline: the lower of the two medians)`,
  )
  return {
    ok: rssFlat && rssWithinBound && latencyStable,
    rssFlat,
    rssWithinBound,
    latencyStable,
    lines,
    rssPerCountedByte,
    steadyRss,
    maxRss,
    bound,
  }
}
