/**
 * Soak test: a bounded mixed load against a broker child process for N minutes, sampling its
 * memory, counters and latencies every interval, then a verdict on whether memory stayed flat
 * under the retention cap and whether latency spiked while retention was dropping messages.
 *
 *   bun run bench/soak.ts [--minutes N] [--max-memory SIZE] [--max-age AGE] [--rate N]
 *                         [--payload BYTES] [--topics N] [--json FILE]
 *
 * Not part of `bun test` and not run by bench/run.ts: it takes minutes and wants the machine.
 * `--help` lists every option. Processes:
 *
 * - the broker: `bun run src/server.ts --port 0 --no-http [retention flags]`;
 * - the load (this script again, `--role load`): writer connections putting pipelined small
 *   messages round-robin over the load topics (as fast as the server takes them, at most
 *   `--window` batches of `--batch` puts unconfirmed per writer, or at `--rate` puts/s in all),
 *   one binary subscriber to every load topic, and one JSON-protocol poller (raw TCP, bare
 *   `{"action": "get", ...}` objects, pipelined in batches);
 * - this process: the latency probe (putAck on a probe topic timed to its DELIVER on a second
 *   connection, and the putAck round trip; ping and a binary `get` of a load topic, each on a
 *   connection of its own) and the sampler (VmRSS / VmHWM and CPU time of the broker from /proc,
 *   its STATS counters, and the CPU the rest of the machine used, to tell contention apart).
 *
 * The verdict: RSS is flat when the last third of the samples lie within --rss-tolerance of each
 * other, and bounded when its peak stays below cap x --rss-factor + --rss-slack; latency spiked
 * when an interval in which retention removed messages has a p99.9 over --spike-factor times the
 * baseline (intervals where other processes used the CPU are reported apart, as inconclusive).
 * The server's STATS count retention drops (droppedByRetention); puts − storedMessages stands in for
 * it (exact for the in-memory store, which removes messages only through retention).
 *
 * Every loop is bounded by a deadline; the script stops by itself, and kills what it started if
 * anything overruns.
 */

import { coordinatorMain } from "./soak/coordinator.ts"
import { loadMain } from "./soak/load-process.ts"
import { parseOptions } from "./soak/options.ts"
import { killAll } from "./soak/processes.ts"

if (import.meta.main) {
  const argv = process.argv.slice(2)
  if (argv[0] === "--role" && argv[1] === "load") {
    await loadMain(argv.slice(2))
  } else {
    const options = parseOptions(argv)
    process.on("SIGINT", () => {
      console.error("soak: interrupted; killing the broker and the load process")
      killAll()
      process.exit(130)
    })
    process.exit(await coordinatorMain(options))
  }
}
