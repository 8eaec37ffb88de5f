/**
 * The end-to-end load generator: the broker in its own process (`bun run src/server.ts --port 0
 * --http-port 0`, a fresh one per scenario and protocol), the load in this one, over loopback
 * only (TCP, and WebSocket on the broker's HTTP port).
 *
 *   bun run bench/load.ts [--quick] [--only SCENARIO] [--protocol PROTOCOL] [--against HOST:PORT] [--peers]
 *
 * Scenarios (each over every protocol that can run it; see bench/README.md):
 *   rtt     1 writer, 1 reader, sequential: put, wait until the reader has it, put the next (64 B)
 *   khz     10 writers × 1 kHz each (open loop), 10 readers each reading all 10 topics
 *   fanout  1 writer at 1 kHz (open loop), 100 readers
 *   max     1 writer as fast as it can (single puts pipelined, or batches of 100), 1 reader
 *
 * Protocols: json-stream (upstream's bare JSON objects; readers pull with get_wait), binary-pull
 * (GET_WAIT, plus pipelined GETs while there is a backlog), binary-push (SUBSCRIBE), and over the
 * broker's WebSocket endpoint (ws://HOST:HTTP_PORT/, bench/load/websocket.ts): websocket-json
 * (upstream 1.x text messages; readers pull with get_wait) and websocket-binary-push (binary
 * frames in binary messages; SUBSCRIBE).
 * The floors, measured by the same code in the same run: rtt against a bare echo server, khz and
 * fanout against a bare relay that writes every message to every reader (bench/load/echo-server.ts).
 *
 * Readers live on this thread; paced and blasting writers on a Worker (bench/load/sender-worker.ts)
 * so sending on schedule never waits for reading. Every loop is bounded in count and in time.
 */

import { printTable, writeResults } from "./common.ts"
import { FULL, parseOptions, QUICK } from "./load/options.ts"
import { execute, missingPeers, plan } from "./load/plan.ts"
import {
  checkTargets,
  LOAD_TABLE_HEADER,
  LOAD_TABLE_NOTES,
  type LoadResults,
  loadTableRows,
  PEER_TABLE_HEADER,
  PEER_TABLE_NOTES,
  peerTableRows,
  type ScenarioResult,
  scenarioLegend,
  TARGET_TABLE_HEADER,
  targetTableRows,
} from "./load/results.ts"
import { mergeRtt } from "./load/rtt.ts"

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2))
  const durations = options.quick ? QUICK : FULL
  const runs = plan(options)
  if (runs.length === 0) {
    console.error("load: nothing to run for these --only / --protocol choices")
    return 2
  }
  console.log(
    `Load scenarios${options.quick ? " (quick)" : ""}: ${runs.length} runs, each against a fresh broker process (bun run src/server.ts --port 0 --http-port 0) on 127.0.0.1`,
  )
  for (const line of scenarioLegend()) console.log(line)
  const unavailable = missingPeers(options)
  for (const { cell, reason } of unavailable) console.log(`${cell}: ${reason}`)
  const results: ScenarioResult[] = []
  for (const [index, run] of runs.entries()) {
    // The progress line: which run, of how many, while it runs; its result ends the line.
    const line = `  [${index + 1}/${runs.length}] ${run.id}${run.external === null ? "" : ` @ ${run.external.host}:${run.external.port}`}`
    process.stdout.write(line.padEnd(52))
    const result = await execute(run, options, durations)
    results.push(result)
    if (result.error !== null) {
      console.log(`failed after ${result.seconds.toFixed(1)} s: ${result.error}`)
    } else {
      const latency = result.latency
      console.log(
        `${result.seconds.toFixed(1).padStart(5)} s  ${result.unique.toLocaleString("en-US").padStart(9)} delivered, loss ${result.loss}` +
          (latency === null ? "" : `, p50 ${latency.p50.toFixed(0)} µs, p99 ${latency.p99.toFixed(0)} µs`) +
          (result.sendLag === null || result.latencyFromSend === null
            ? ""
            : `; from actual send p50 ${result.latencyFromSend.p50.toFixed(0)} µs, p99 ${result.latencyFromSend.p99.toFixed(0)} µs; send lag p99 ${result.sendLag.p99.toFixed(0)} µs`) +
          (result.notes.length === 0 ? "" : `  (${result.notes.join("; ")})`),
      )
    }
  }

  mergeRtt(results)
  printTable("Load scenarios (loopback; one fresh broker process per row)", [...LOAD_TABLE_HEADER], loadTableRows(results))
  console.log()
  for (const line of LOAD_TABLE_NOTES) console.log(line)
  const besideNats = peerTableRows(results)
  if (besideNats.length > 0) {
    printTable("Beside NATS (--peers; ratios to the NATS row of the same scenario, same run)", [...PEER_TABLE_HEADER], besideNats)
    console.log()
    for (const line of PEER_TABLE_NOTES) console.log(line)
  }
  for (const { cell, reason } of unavailable) console.log(`${cell}: ${reason}`)

  const targets = checkTargets(results)
  if (options.targets) {
    printTable(
      "Targets of issue 4 (this run; the issue asks for medians over repeated runs)",
      [...TARGET_TABLE_HEADER],
      targetTableRows(targets),
    )
  }

  // Every protocol has a driver: a cell that cannot run is a failed row with its error; only a
  // peer that is not installed is "unavailable".
  const loadResults: LoadResults = { quick: options.quick, scenarios: results, unavailable, targets }
  await writeResults("load", { load: loadResults })
  return results.some((result) => result.error !== null) ? 1 : 0
}

process.exit(await main())
