/** The soak test's command line: what load to run, what to pass the broker, and the verdict's thresholds. */
import { DEFAULT_RETENTION } from "../../src/broker/retention.ts"
import { parseAge, parseSize } from "../../src/config/values.ts"
import { type OptionSpec, parseOptionsOrExit } from "../lib/args.ts"
import { MiB } from "./format.ts"

export const USAGE = `Usage: bun run bench/soak.ts [options]

Load:
  --minutes N          how long the load runs (default 10; fractions allowed)
  --rate N             puts per second over all writers; 0: as fast as the server takes them (default 0)
  --payload BYTES      payload size of the load's puts (default 100)
  --topics N           load topics, written round-robin (default 16)
  --writers N          writer connections (default 3)
  --batch N            puts per pipelined batch, each followed by a ping (default 100)
  --window N           batches a writer may have unconfirmed (default 4)
  --poll-batch N       JSON gets per pipelined round trip of the poller (default 50)
  --probe-rate N       latency probes per second, per series (default 200)
  --interval SECS      sampling interval (default 10)

Server (passed to src/server.ts; omitted ones keep the server's defaults):
  --max-memory SIZE    store cap, e.g. 64MiB (server default ${DEFAULT_RETENTION.maxStoreBytes! / MiB}MiB)
  --max-age AGE        age limit, e.g. 5s: turns on the age sweep (server default none)
  --max-messages N     messages per topic (server default ${DEFAULT_RETENTION.defaults.maxMessages})
  --idle-timeout SECS  passed on as is. Under Bun 1.4.5, Bun.listen gives every socket a one-shot
                       120 s timeout that traffic does not reset, and the server ends the connection
                       when it fires, so without this a soak loses all its connections at 120 s;
                       --idle-timeout 86400 moves that deadline out of the way (server default none)

Verdict:
  --rss-tolerance PCT  the last third of the RSS samples must lie within PCT % of each other (default 10)
  --rss-factor K       RSS must stay below cap x K + slack (default 1.25)
  --rss-slack SIZE     ... (default 128MiB)
  --spike-factor F     an interval's p99.9 is a spike when over F x baseline and baseline + 10 ms (default 3)
  --contention PCT     an interval is contended when other processes used more than PCT % of one core
                       (from /proc/stat); its spikes are reported as inconclusive (default 50)

Output:
  --json FILE          write the configuration, samples and verdict as JSON
  -h, --help           show this help
`

export interface SoakOptions {
  minutes: number
  rate: number
  payload: number
  topics: number
  writers: number
  batch: number
  window: number
  pollBatch: number
  probeRate: number
  intervalSeconds: number
  maxMemory: string | null
  maxAge: string | null
  maxMessages: string | null
  idleTimeout: string | null
  rssTolerance: number
  rssFactor: number
  rssSlack: number
  spikeFactor: number
  contention: number
  json: string | null
}

/** The options, each with its range; parsed by the bench scripts' one parser (bench/lib/args.ts). */
const SPECS = {
  minutes: { type: "number", min: 0.05, max: 24 * 60 },
  rate: { type: "number", min: 0, max: 10_000_000 },
  payload: { type: "number", min: 1, max: 65_536, integer: true },
  topics: { type: "number", min: 1, max: 10_000, integer: true },
  writers: { type: "number", min: 1, max: 64, integer: true },
  batch: { type: "number", min: 1, max: 10_000, integer: true },
  window: { type: "number", min: 1, max: 1000, integer: true },
  "poll-batch": { type: "number", min: 1, max: 10_000, integer: true },
  "probe-rate": { type: "number", min: 1, max: 2000 },
  interval: { type: "number", min: 1, max: 3600 },
  // Checked with the server's own parsers, and passed to it as given.
  "max-memory": { type: "string", check: (text: string) => parseSize("--max-memory", text) },
  "max-age": { type: "string", check: (text: string) => parseAge("--max-age", text) },
  "max-messages": { type: "string" },
  "idle-timeout": { type: "number", min: 0, max: 86_400, integer: true },
  "rss-tolerance": { type: "number", min: 0, max: 1000 },
  "rss-factor": { type: "number", min: 0.1, max: 100 },
  "rss-slack": { type: "string", check: (text: string) => parseSize("--rss-slack", text) },
  "spike-factor": { type: "number", min: 1, max: 1000 },
  contention: { type: "number", min: 0, max: 10_000 },
  json: { type: "string" },
} as const satisfies Record<string, OptionSpec>

export function parseOptions(argv: readonly string[]): SoakOptions {
  const given = parseOptionsOrExit("soak", USAGE, argv, SPECS)
  return {
    minutes: given.minutes ?? 10,
    rate: given.rate ?? 0,
    payload: given.payload ?? 100,
    topics: given.topics ?? 16,
    writers: given.writers ?? 3,
    batch: given.batch ?? 100,
    window: given.window ?? 4,
    pollBatch: given["poll-batch"] ?? 50,
    probeRate: given["probe-rate"] ?? 200,
    intervalSeconds: given.interval ?? 10,
    maxMemory: given["max-memory"] ?? null,
    maxAge: given["max-age"] ?? null,
    maxMessages: given["max-messages"] ?? null,
    idleTimeout: given["idle-timeout"] === undefined ? null : String(given["idle-timeout"]),
    rssTolerance: given["rss-tolerance"] ?? 10,
    rssFactor: given["rss-factor"] ?? 1.25,
    rssSlack: given["rss-slack"] === undefined ? 128 * MiB : (parseSize("--rss-slack", given["rss-slack"]) ?? 0),
    spikeFactor: given["spike-factor"] ?? 3,
    contention: given.contention ?? 50,
    json: given.json ?? null,
  }
}
