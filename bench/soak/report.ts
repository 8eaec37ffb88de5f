import { writeFileSync } from "node:fs"
import os from "node:os"
import { STORED_MESSAGE_OVERHEAD } from "../../src/broker/retention.ts"
import { summarize } from "../lib/stats.ts"
import { fmt, table } from "./format.ts"
import type { LoadTally } from "./load-process.ts"
import type { SoakOptions } from "./options.ts"
import type { Probe } from "./probe.ts"
import type { Sample, Series, ServerStatsSnapshot } from "./sample.ts"
import type { Sampler } from "./sampler.ts"
import type { Verdict } from "./verdict.ts"

export function liveHeader(): string {
  return "  t(s)  RSS MiB  stored msgs  counted MiB  puts/s  deliv/s  dropped/s  srv CPU%  other CPU% | deliver p50/p99/p99.9/max ms | get p99.9 | ping p99.9"
}

export function printLive(s: Sample, cap: number | null): void {
  const capNote = cap === null ? "" : ` (${((s.countedBytes / cap) * 100).toFixed(0)}%)`
  console.log(
    `${(s.phase === "fill" ? `${s.t.toFixed(0)}f` : s.t.toFixed(0)).padStart(6)}  ${fmt.mib(s.rss).padStart(7)}  ${fmt.int(s.storedMessages).padStart(11)}  ${(fmt.mib(s.countedBytes) + capNote).padStart(11)}  ` +
      `${fmt.rate(s.putsPerSecond).padStart(6)}  ${fmt.rate(s.deliveriesPerSecond).padStart(7)}  ${fmt.rate(s.droppedPerSecond).padStart(9)}  ${s.serverCpuPercent.toFixed(0).padStart(8)}  ${fmt.pct(s.otherCpuPercent).padStart(10)} | ` +
      `${[s.deliver.p50, s.deliver.p99, s.deliver.p999, s.deliver.max].map(fmt.ms).join(" / ").padStart(27)} | ${fmt.ms(s.get.p999).padStart(9)} | ${fmt.ms(s.ping.p999).padStart(10)}`,
  )
}

export function printReport(
  samples: readonly Sample[],
  series: Record<string, Series>,
  verdict: Verdict,
  options: SoakOptions,
  cap: number | null,
  idleRss: number,
  afterLoadRss: number,
): void {
  console.log(
    "\nMemory and throughput (rates per second over each interval; counted = payload + " +
      `${STORED_MESSAGE_OVERHEAD} B/message, what the cap limits;`,
  )
  console.log(
    `CPU in % of one core of ${os.cpus().length}: the broker, the load process, this process (probe and sampler), and everything else on the machine)`,
  )
  console.log(
    table(
      [
        "t(s)",
        "RSS MiB",
        "HWM MiB",
        "load RSS",
        "stored msgs",
        "stored MiB",
        "counted MiB",
        "cap %",
        "puts/s",
        "deliv/s",
        "dropped/s",
        "srv CPU%",
        "load CPU%",
        "own CPU%",
        "other CPU%",
        "max conn buf KiB",
        "errors",
        "load1",
      ],
      samples.map((s) => [
        s.phase === "fill" ? `${s.t.toFixed(0)} fill` : s.t.toFixed(0),
        fmt.mib(s.rss),
        fmt.mib(s.hwm),
        fmt.mib(s.loadRss),
        fmt.int(s.storedMessages),
        fmt.mib(s.storedBytes),
        fmt.mib(s.countedBytes),
        cap === null ? "-" : ((s.countedBytes / cap) * 100).toFixed(0),
        fmt.rate(s.putsPerSecond),
        fmt.rate(s.deliveriesPerSecond),
        fmt.rate(s.droppedPerSecond),
        s.serverCpuPercent.toFixed(0),
        fmt.pct(s.loadCpuPercent),
        fmt.pct(s.selfCpuPercent),
        fmt.pct(s.otherCpuPercent),
        (s.maxConnectionBufferedBytes / 1024).toFixed(0),
        String(s.errors),
        s.loadAverage.toFixed(2),
      ]),
    ),
  )
  const latencyTable = (title: string, names: readonly ("deliver" | "ack" | "get" | "ping")[]): void => {
    console.log(`\n${title}`)
    console.log(
      table(
        ["t(s)", "dropping", ...names.flatMap((name) => [`${name} n`, "p50", "p99", "p99.9", "max"])],
        samples.map((s) => [
          s.t.toFixed(0),
          s.phase === "fill" ? "fill" : s.dropping ? "yes" : "no",
          ...names.flatMap((name) => [
            String(s[name].n),
            fmt.ms(s[name].p50),
            fmt.ms(s[name].p99),
            fmt.ms(s[name].p999),
            fmt.ms(s[name].max),
          ]),
        ]),
      ),
    )
  }
  latencyTable("Latency, ms: put→deliver (putAck sent to DELIVER on another connection) and the putAck round trip", ["deliver", "ack"])
  latencyTable("Latency, ms: request round trips on otherwise idle connections: binary get (of a load topic) and ping", ["get", "ping"])
  console.log("\nWhole run, ms:")
  console.log(
    table(
      ["series", "n", "p50", "p99", "p99.9", "max"],
      Object.entries(series).map(([name, s]) => {
        const w = summarize(s.all)
        return [name, String(w.n), fmt.ms(w.p50), fmt.ms(w.p99), fmt.ms(w.p999), fmt.ms(w.max)]
      }),
    ),
  )
  console.log(
    `\nVerdict: ${verdict.ok ? "PASS" : "FAIL"}${options.maxAge === null ? "" : ` (age limit ${options.maxAge}: the sweep runs every second)`}`,
  )
  for (const line of verdict.lines) console.log(`  ${line}`)
  console.log(
    `  RSS 2 s after the load stopped: ${fmt.mib(afterLoadRss)} MiB (idle at start ${fmt.mib(idleRss)} MiB${cap === null ? "" : `, cap ${fmt.mib(cap)} MiB`})`,
  )
}

/** The lines that open a run: the load, the broker's command line, the machine. */
export function printStart(options: SoakOptions, brokerArgs: readonly string[], cap: number | null): void {
  console.log(
    `soak: ${options.minutes} min, ${options.writers} writers x ${options.topics} topics, ${options.payload}-byte payloads, ` +
      `${options.rate > 0 ? `${options.rate} puts/s` : "as fast as the server takes them"} ` +
      `(batches of ${options.batch}, window ${options.window}); probe ${options.probeRate}/s per series; sample every ${options.intervalSeconds} s`,
  )
  console.log(
    `soak: server: bun ${brokerArgs.join(" ")}   (cap ${cap === null ? "none" : `${fmt.mib(cap)} MiB`}, counted as payload + ${STORED_MESSAGE_OVERHEAD} B/message)`,
  )
  const loadAverages = os.loadavg().map((v) => v.toFixed(2))
  console.log(`soak: ${os.cpus().length} cores, load average ${loadAverages.join(" ")} before start`)
}

/** How a run ended, apart from its samples: what the report's last lines and the JSON file say. */
export interface SoakOutcome {
  readonly probe: Probe
  readonly load: LoadTally | null
  readonly finalStats: ServerStatsSnapshot | null
  readonly sampler: Sampler
  readonly clientErrors: readonly string[]
  readonly brokerLog: readonly string[]
  readonly failure: string | null
}

/** The accounting after the verdict: probes, the load's tally, the broker's last counters, errors. */
export function printSummary({ probe, load, finalStats, sampler, clientErrors, brokerLog, failure }: SoakOutcome): void {
  const { series } = probe
  console.log(
    `  probes: ${series.ack.all.length} putAck, ${series.deliver.all.length} delivered, ${probe.lost} lost (not delivered within 30 s), ` +
      `${probe.sentAt.size} still unanswered at the end, ${probe.skipped} skipped (too many outstanding), ${probe.late} schedule restarts (this process stalled > 100 ms)`,
  )
  if (load !== null) {
    const unaccounted = load.putsConfirmed - load.subscriberReceived - load.subscriberMissed
    console.log(
      `  load: ${fmt.int(load.putsSent)} puts sent (${fmt.int(load.putsConfirmed)} confirmed), subscriber got ${fmt.int(load.subscriberReceived)} ` +
        `(+${fmt.int(load.subscriberMissed)} missed to retention, ${fmt.int(load.subscriberOutOfOrder)} out of order; ` +
        `${unaccounted === 0 ? "all confirmed puts accounted for" : `${fmt.int(unaccounted)} confirmed puts NOT accounted for`}), JSON poller ${fmt.int(load.pollReplies)} replies: ${fmt.int(load.pollMessages)} messages, ` +
        `${fmt.int(load.pollEmpty)} empty, ${fmt.int(load.pollMissed)} missed to retention; errors: ${load.clientErrors} client, ${load.pollErrors} poller, ` +
        `${load.closedConnections} connections lost${load.lastError === null ? "" : ` (last: ${load.lastError})`}`,
    )
  }
  if (finalStats !== null) {
    const nonZero = Object.entries(finalStats.errors).filter(([, count]) => count > 0)
    const droppedByRetention = Number((finalStats as unknown as Record<string, unknown>).droppedByRetention ?? Number.NaN)
    console.log(
      `  server at the end: ${fmt.int(finalStats.puts)} puts, ${fmt.int(finalStats.deliveries)} deliveries, ${fmt.int(finalStats.storedMessages)} stored, ` +
        `${fmt.int(finalStats.puts - finalStats.storedMessages)} removed by retention (puts − stored; STATS droppedByRetention ${fmt.int(droppedByRetention)}), errors reported: ${nonZero.length === 0 ? "none" : nonZero.map(([name, count]) => `${name} ${count}`).join(", ")}`,
    )
  }
  if (!sampler.droppedExposed)
    console.log(
      "  note: the server's STATS do not expose the retention-dropped count (Retention.droppedCount); 'dropped' here is puts − storedMessages, exact for the in-memory store",
    )
  if (clientErrors.length > 0) console.log(`  probe client errors: ${clientErrors.length}: ${clientErrors.slice(0, 5).join("; ")}`)
  if (brokerLog.length > 0) console.log(`  broker stderr:\n${brokerLog.map((line) => `    ${line}`).join("\n")}`)
  if (failure !== null) console.log(`  FAILURE: ${failure}`)
}

/** Everything the run measured, as JSON, for --json. */
export function writeJsonReport(
  file: string,
  run: SoakOutcome & {
    readonly options: SoakOptions
    readonly cap: number | null
    readonly idle: { rss: number } | null
    readonly afterLoad: { rss: number } | null
    readonly verdict: Verdict
  },
): void {
  const { probe, sampler } = run
  const report = {
    options: run.options,
    cap: run.cap,
    storedMessageOverhead: STORED_MESSAGE_OVERHEAD,
    cores: os.cpus().length,
    idleRss: run.idle?.rss ?? null,
    rssAfterLoad: run.afterLoad?.rss ?? null,
    samples: sampler.samples,
    verdict: run.verdict,
    failure: run.failure,
    probes: { lost: probe.lost, late: probe.late, skipped: probe.skipped },
    whole: Object.fromEntries(
      Object.entries(probe.series).map(([name, s]) => [
        name,
        { all: summarize(s.all), dropping: summarize(s.dropping), quiet: summarize(s.quiet) },
      ]),
    ),
    load: run.load,
    finalStats: run.finalStats,
    clientErrors: run.clientErrors,
    serverLog: run.brokerLog,
    droppedExposed: sampler.droppedExposed,
  }
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  console.log(`  wrote ${file}`)
}
