/**
 * Mixed-abuse soak: about 1,000 connections of every abusive kind at once, for minutes, beside
 * well-behaved clients, against a server with a small budget for what clients may make it hold.
 *
 *   bun run bench/abuse-soak.ts [--minutes 10] [--budget 64MiB] [--store 64MiB] [--json FILE]
 *
 * Runs bench/isolation.ts with every mode of test/abuse-fixture.ts together (baseline, all at
 * once, baseline again): 400 connections trickling first frames they never finish, 100 readers
 * a cycle that never read (re-made every second), 50 connections getting topics that do not
 * exist, 300 half-open connections and a connect/close loop, two floods and a stream of garbage.
 * Then checks:
 * - what clients hold (the budget's own figure) stays under the budget plus its documented
 *   overshoot: 64 KiB a connection, and one reply for each connection that reads (the
 *   never-reading readers' 960 KiB messages; every other reply here is a few bytes);
 * - the server's RSS does not grow (the last third of the run peaks no higher than 10 % over
 *   the first third) and stays under the budget plus the store's cap plus STATED_CONSTANT;
 * - the well-behaved clients lose nothing: every acknowledged put is delivered, in order, none
 *   missed, and every get is answered;
 * - their p99 stays within 5x of the baseline's.
 * Exits 1 when a check fails. Not part of `bun test` or `bun run bench`: it takes the machine
 * for the whole run.
 */
import { parseSize } from "../src/config/values.ts"
import { parseOptionsOrExit } from "./lib/args.ts"

const USAGE = "usage: bun run bench/abuse-soak.ts [--minutes N] [--budget SIZE] [--store SIZE] [--json FILE]\n"
const given = parseOptionsOrExit("abuse-soak", USAGE, process.argv.slice(2), {
  minutes: { type: "number", min: 0.1, max: 60 },
  budget: { type: "string" },
  store: { type: "string" },
  json: { type: "string" },
})
const minutes = given.minutes ?? 10
const budgetText = given.budget ?? "64MiB"
const storeText = given.store ?? "64MiB"
const budget = parseSize("--budget", budgetText)!
const store = parseSize("--store", storeText)!
const jsonFile = given.json ?? `/tmp/abuse-soak-${process.pid}.json`
const MiB = 2 ** 20
/**
 * Beyond the budget and the store's cap: an idle server (~60 MiB), SQLite's page slack, 1,000
 * sockets, and above all the garbage the JavaScript heap carries between collections while the
 * abusers make the server allocate for ~30,000 refused connections and ~500,000 requests a second.
 */
const STATED_CONSTANT = 1024 * MiB
/** Connections of the soak at most (abusers, well-behaved clients, newcomers). */
const CONNECTIONS = 1100
/** Readers that never read, at once (test/abuse-fixture.ts never-read, scaled as below), and the most one reply to them holds: a 960 KiB message and its frame. */
const NEVER_READERS = 100
const BIG_REPLY_BYTES = 961 * 1024
const P99_FACTOR = 5

const SCALE = "partial-frame=400,never-read=100,absent-gets=50,connect-loop=300"
const args = [
  "run",
  "bench/isolation.ts",
  "--together-only",
  "--seconds",
  String(minutes * 60),
  "--warmup-seconds",
  "5",
  "--scale",
  SCALE,
  `--server-args=--max-buffered-bytes ${budgetText} --max-memory ${storeText} --max-connections 1200`,
  "--json",
  jsonFile,
]
console.log(`abuse-soak: bun ${args.join(" ")}`)
const child = Bun.spawn([process.execPath, ...args], { cwd: `${import.meta.dir}/..`, stdout: "inherit", stderr: "inherit" })
if ((await child.exited) !== 0) {
  console.error("abuse-soak: bench/isolation.ts failed")
  process.exit(1)
}

interface Phase {
  name: string
  binary: { p99: number; unanswered: number; wrong: number }
  json: { p99: number; unanswered: number; wrong: number }
  pipeline: { acked: number; delivered: number; lost: number; outOfOrder: number; missed: number; refused: number }
  samples: { rssBytes: number[]; peakRssBytes: number; peakBufferedBytes: number; peakBudgetPaused: number }
  server: { peakRssBytes: number; errors: Record<string, number> }
}
const { results } = (await Bun.file(jsonFile).json()) as { results: Phase[] }
const [baseline, abused] = [results[0]!, results.find((phase) => phase.name === "all at once")!]

const rssBound = budget + store + STATED_CONSTANT
const peakRss = Math.max(abused.samples.peakRssBytes, abused.server.peakRssBytes)
const heldBound = budget + CONNECTIONS * 64 * 1024 + NEVER_READERS * BIG_REPLY_BYTES
const rss = abused.samples.rssBytes
const third = Math.floor(rss.length / 3)
const firstThird = Math.max(...rss.slice(0, third))
const lastThird = Math.max(...rss.slice(-third))
const checks: [string, boolean, string][] = [
  [
    "held by clients under the budget and its overshoot",
    abused.samples.peakBufferedBytes <= heldBound,
    `peak ${(abused.samples.peakBufferedBytes / MiB).toFixed(1)} MiB <= ${(budget / MiB).toFixed(0)} MiB + ${CONNECTIONS} x 64 KiB + ${NEVER_READERS} x 961 KiB = ${(heldBound / MiB).toFixed(0)} MiB; ${abused.samples.peakBudgetPaused} connections paused at most`,
  ],
  [
    "server RSS flat",
    lastThird <= firstThird * 1.1,
    `peak ${(firstThird / MiB).toFixed(0)} MiB in the first third of the run, ${(lastThird / MiB).toFixed(0)} MiB in the last (${rss.length} samples)`,
  ],
  [
    "server RSS under budget + store cap + constant",
    peakRss <= rssBound,
    `peak ${(peakRss / MiB).toFixed(0)} MiB (VmHWM) <= ${(budget / MiB).toFixed(0)} + ${(store / MiB).toFixed(0)} + ${STATED_CONSTANT / MiB} = ${(rssBound / MiB).toFixed(0)} MiB`,
  ],
  [
    "well-behaved clients lose nothing",
    abused.pipeline.lost === 0 &&
      abused.pipeline.outOfOrder === 0 &&
      abused.pipeline.missed === 0 &&
      abused.binary.unanswered + abused.json.unanswered + abused.binary.wrong + abused.json.wrong === 0,
    `${abused.pipeline.acked} acknowledged puts, ${abused.pipeline.delivered} delivered, ${abused.pipeline.lost} lost, ${abused.pipeline.outOfOrder} out of order, ${abused.pipeline.missed} missed, ${abused.pipeline.refused} refused; gets unanswered ${abused.binary.unanswered + abused.json.unanswered}, wrong ${abused.binary.wrong + abused.json.wrong}`,
  ],
  ...(["binary", "json"] as const).map((protocol): [string, boolean, string] => {
    const ratio = abused[protocol].p99 / baseline[protocol].p99
    return [
      `${protocol} p99 within ${P99_FACTOR}x of running alone`,
      ratio <= P99_FACTOR,
      `${abused[protocol].p99.toFixed(2)} ms vs ${baseline[protocol].p99.toFixed(2)} ms alone: ${ratio.toFixed(1)}x`,
    ]
  }),
]
console.log("\nabuse-soak verdict:")
for (const [what, ok, detail] of checks) console.log(`  ${ok ? "PASS" : "FAIL"}  ${what}: ${detail}`)
console.log(`  server errors while abused: ${JSON.stringify(abused.server.errors)}`)
process.exit(checks.every(([, ok]) => ok) ? 0 : 1)
