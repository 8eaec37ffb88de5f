#!/usr/bin/env bun
/**
 * The `dsmq` command: `dsmq serve` runs the server; put, get, sub, topics and stats talk to
 * one through the TypeScript client; bench runs the benchmark suite. Each subcommand has its
 * own --help; exit codes are 0 done, 1 failed or found nothing, 2 a command line that cannot
 * be read.
 */
import { runBench } from "./bench.ts"
import { runCommand } from "./command-line.ts"
import { runGet } from "./get.ts"
import { runStats, runTopics } from "./inspect.ts"
import { runPut } from "./put.ts"
import { runServe } from "./serve.ts"
import { runSub } from "./sub.ts"
import { versionLine } from "./version.ts"

export const HELP = `Usage: dsmq COMMAND [options]

A fast, dsmq-compatible message broker and its command-line client.

Commands:
  serve                 run the server (dsmq serve --help lists its options)
  put TOPIC [MESSAGE]   put a message, or one per line of stdin
  get TOPIC|PATTERN     print the newest message, or those after --from SEQ or a --cursor
  sub PATTERN...        print messages as they are put, until Ctrl-C
  topics [PATTERN]      list the topics and their counts
  stats                 print the server's counters
  bench                 run the benchmark suite (from a checkout)
  version               print the version

Client commands reach 127.0.0.1:30008 unless told otherwise (--host, --port, or DSMQ_HOST,
DSMQ_PORT); --token or DSMQ_TOKEN when the server requires one.

Examples:
  dsmq serve
  dsmq sub 'lab/#' -v
  echo 21.5 | dsmq put lab/temp
`

const COMMANDS: Record<string, (argv: readonly string[], env: Record<string, string | undefined>) => Promise<number>> = {
  put: runPut,
  get: runGet,
  sub: runSub,
  topics: runTopics,
  stats: runStats,
  bench: (argv) => runBench(argv),
}

export function main(argv: readonly string[], env: Record<string, string | undefined>): void {
  const [command, ...rest] = argv
  if (command === "serve") {
    runServe(rest, env)
    return
  }
  if (command === "version" || command === "--version" || command === "-V") {
    console.log(versionLine())
    return
  }
  if (command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(HELP)
    return
  }
  if (command === undefined) {
    process.stderr.write(HELP)
    process.exit(2)
  }
  const run = COMMANDS[command]
  if (run === undefined) {
    console.error(`dsmq: unknown command ${JSON.stringify(command)}\nsee dsmq --help`)
    process.exit(2)
  }
  void runCommand(command, () => run(rest, env))
}

if (import.meta.main) main(process.argv.slice(2), process.env)
