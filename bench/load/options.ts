/** The load generator's command line: which scenarios, protocols and target, and how long each phase runs. */
import { type OptionSpec, parseOptionsOrExit } from "../lib/args.ts"
import { LOAD_PROTOCOLS, type Protocol, parseLoopbackAddress, SCENARIOS, type ScenarioName } from "./results.ts"

export const USAGE = `Usage: bun run bench/load.ts [options]

End-to-end load scenarios against a broker spawned from src/server.ts (see bench/README.md).

Options:
  --quick                 shorter phases, for a smoke run
  --only NAME             run only these scenarios (repeatable, or comma-separated):
                          ${SCENARIOS.join(", ")}, or floor (the floors only); a scenario
                          always brings its floor (rtt: echo, khz and fanout: relay)
  --protocol NAME         run only these protocols (repeatable): json-stream, binary-pull,
                          binary-push, websocket-json, websocket-binary-push
  --against HOST:PORT     also run the json-stream scenarios against another dsmq-compatible
                          server at HOST:PORT (loopback addresses only)
  --peers                 also run rtt, khz, fanout and max against nats-server and mosquitto
                          (spawned on 127.0.0.1; a peer that is not installed is skipped with a
                          note), and print every row beside NATS's
  --server-env NAME=VALUE set an environment variable for every broker spawned (repeatable),
                          e.g. BUN_JSC_numberOfGCMarkers=1 (see bench/README.md)
  --targets               also print the project's performance targets and whether this run met them
  --server-cpu-prof DIR   run each spawned broker under bun --cpu-prof, writing a profile
                          (and its Markdown summary) per scenario into DIR
  -h, --help              show this help

Results go to $BENCH_RESULTS as JSON when it is set (bench/run.ts sets it).
`

export interface Options {
  readonly quick: boolean
  /** Empty: everything. */
  readonly only: ReadonlySet<ScenarioName | "floor">
  readonly protocols: ReadonlySet<Protocol>
  readonly against: { readonly host: string; readonly port: number } | null
  readonly cpuProfileDir: string | null
  /** Extra environment of the spawned brokers (--server-env). */
  readonly serverEnv: Readonly<Record<string, string>>
  /** Also measure the peers (nats-server, mosquitto) that are installed. */
  readonly peers: boolean
  /** Print the targets table (the project's own checks, not what a user needs). */
  readonly targets: boolean
}

export const PROTOCOLS: readonly Protocol[] = LOAD_PROTOCOLS

const SPECS = {
  quick: { type: "boolean" },
  only: { type: "list", choices: [...SCENARIOS, "floor"] },
  protocol: { type: "list", choices: PROTOCOLS },
  against: { type: "string", check: (text: string) => parseLoopbackAddress(text) },
  "server-cpu-prof": { type: "string" },
  peers: { type: "boolean" },
  "server-env": { type: "list" },
  targets: { type: "boolean" },
} as const satisfies Record<string, OptionSpec>

/** Parses the command line (exits with the usage on a bad one); BENCH_QUICK=1 means --quick. */
export function parseOptions(argv: readonly string[]): Options {
  const given = parseOptionsOrExit("load", USAGE, argv, SPECS)
  return {
    quick: given.quick || process.env.BENCH_QUICK === "1",
    only: new Set(given.only ?? []),
    protocols: new Set(given.protocol ?? []),
    against: given.against === undefined ? null : parseLoopbackAddress(given.against),
    cpuProfileDir: given["server-cpu-prof"] ?? null,
    peers: given.peers,
    serverEnv: serverEnvironment(given["server-env"] ?? []),
    targets: given.targets,
  }
}

/** NAME=VALUE pairs as an environment (exits with a usage error on anything else). */
function serverEnvironment(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const pair of pairs) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair)
    if (match === null) {
      console.error(`load: --server-env needs NAME=VALUE, got "${pair}"`)
      process.exit(2)
    }
    env[match[1]!] = match[2]!
  }
  return env
}

export interface Durations {
  /** rtt: round trips before measuring, measured round trips, time limit for both (ms). */
  readonly rttWarmup: number
  readonly rttIterations: number
  readonly rttTimeLimitMs: number
  /** khz, fanout: warm-up, measured phase, and how long to wait for stragglers after it (ms). */
  readonly pacedWarmupMs: number
  readonly pacedDurationMs: number
  readonly pacedDrainMs: number
  readonly maxWarmupMs: number
  readonly maxDurationMs: number
  readonly maxDrainMs: number
}

export const FULL: Durations = {
  rttWarmup: 1000,
  rttIterations: 10_000,
  rttTimeLimitMs: 10_000,
  pacedWarmupMs: 500,
  pacedDurationMs: 3000,
  pacedDrainMs: 2000,
  maxWarmupMs: 300,
  maxDurationMs: 2000,
  maxDrainMs: 3000,
}

export const QUICK: Durations = {
  rttWarmup: 300,
  rttIterations: 2000,
  rttTimeLimitMs: 4000,
  pacedWarmupMs: 300,
  pacedDurationMs: 800,
  pacedDrainMs: 1000,
  maxWarmupMs: 200,
  maxDurationMs: 800,
  maxDrainMs: 1500,
}
