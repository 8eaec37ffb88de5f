/**
 * What durability costs a put: one binary client pipelining acknowledged puts (64-byte payloads,
 * up to --window in flight) into a fresh `bun run src/server.ts` process, in memory, with
 * `--db --sync normal`, and with `--db --sync full`; and named-cursor gets against anonymous
 * ones. Rates are medians of --rounds runs per mode; ratios are to the in-memory rate.
 *
 *   bun run bench/durable-puts.ts [--messages N] [--window N] [--rounds N]
 *
 * Not part of `bun test` or `bun run bench`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect } from "../src/client.ts"
import { type OptionSpec, parseOptionsOrExit } from "./lib/args.ts"
import { median } from "./lib/stats.ts"
import { spawnBroker } from "./load/processes.ts"

const USAGE = `usage: bun run bench/durable-puts.ts [--messages N] [--window N] [--rounds N]

  --messages N   acknowledged puts per run (default 50000)
  --window N     puts in flight at once (default 256)
  --rounds N     runs per mode; the median is reported (default 3)
`
const SPECS = {
  messages: { type: "number", min: 100, max: 10_000_000, integer: true },
  window: { type: "number", min: 1, max: 100_000, integer: true },
  rounds: { type: "number", min: 1, max: 20, integer: true },
} satisfies Record<string, OptionSpec>
const options = parseOptionsOrExit("bench/durable-puts.ts", USAGE, Bun.argv.slice(2), SPECS)
const MESSAGES = options.messages ?? 50_000
const WINDOW = options.window ?? 256
const ROUNDS = options.rounds ?? 3
const GETS = Math.min(MESSAGES, 20_000)

interface Run {
  readonly putsPerSecond: number
  readonly anonymousGetsPerSecond: number
  readonly namedGetsPerSecond: number
}

async function run(args: string[]): Promise<Run> {
  const broker = await spawnBroker({ args })
  try {
    // Readers first: they read what is put after they connect.
    const anonymous = await connect({ host: broker.host, port: broker.port })
    const named = await connect({ host: broker.host, port: broker.port, cursor: "bench" })
    const client = await connect({ host: broker.host, port: broker.port })
    const payload = new Uint8Array(64).fill(0x61)
    let started = performance.now()
    const inFlight: Promise<number>[] = []
    for (let i = 0; i < MESSAGES; i++) {
      inFlight.push(client.putAck("bench/t", payload))
      if (inFlight.length >= WINDOW) await inFlight.shift()
    }
    await Promise.all(inFlight)
    const putsPerSecond = MESSAGES / ((performance.now() - started) / 1000)
    const gets = async (reader: typeof anonymous) => {
      started = performance.now()
      const pending: Promise<unknown>[] = []
      for (let i = 0; i < GETS; i++) {
        pending.push(reader.get("bench/t"))
        if (pending.length >= WINDOW) await pending.shift()
      }
      await Promise.all(pending)
      return GETS / ((performance.now() - started) / 1000)
    }
    const anonymousGetsPerSecond = await gets(anonymous)
    const namedGetsPerSecond = await gets(named)
    for (const c of [client, anonymous, named]) await c.close()
    return { putsPerSecond, anonymousGetsPerSecond, namedGetsPerSecond }
  } finally {
    await broker.stop()
  }
}

const directory = mkdtempSync(join(tmpdir(), "dsmq-durable-"))
const modes: [string, (round: number) => string[]][] = [
  ["in memory", () => []],
  ["--db --sync normal", (round) => ["--db", join(directory, `normal-${round}.db`)]],
  ["--db --sync full", (round) => ["--db", join(directory, `full-${round}.db`), "--sync", "full"]],
]
const results = new Map<string, Run[]>()
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, args] of modes) {
      const result = await run(args(round))
      results.set(name, [...(results.get(name) ?? []), result])
      console.log(
        `  round ${round + 1} ${name}: ${Math.round(result.putsPerSecond)} puts/s, gets ${Math.round(result.anonymousGetsPerSecond)}/s anonymous, ${Math.round(result.namedGetsPerSecond)}/s named`,
      )
    }
  }
} finally {
  rmSync(directory, { recursive: true, force: true })
}

const medianOf = (name: string, key: keyof Run) => median(results.get(name)!.map((r) => r[key]))
const memory = medianOf("in memory", "putsPerSecond")
console.log(`\n${MESSAGES} acknowledged puts of 64 bytes, ${WINDOW} in flight; ${GETS} gets; medians of ${ROUNDS}\n`)
console.log("| mode | puts/s | × in memory | anonymous gets/s | named-cursor gets/s | named ÷ anonymous time |")
console.log("| --- | --- | --- | --- | --- | --- |")
for (const [name] of modes) {
  const puts = medianOf(name, "putsPerSecond")
  const anonymous = medianOf(name, "anonymousGetsPerSecond")
  const named = medianOf(name, "namedGetsPerSecond")
  console.log(
    `| ${name} | ${Math.round(puts).toLocaleString("en")} | ${(puts / memory).toFixed(2)} | ${Math.round(anonymous).toLocaleString("en")} | ${Math.round(named).toLocaleString("en")} | ${(anonymous / named).toFixed(2)} |`,
  )
}
