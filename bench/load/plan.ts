import { type Durations, type Options, PROTOCOLS } from "./options.ts"
import { findPeer, PEER_PROGRAMS } from "./peers.ts"
import { isPeer, PEER_PROTOCOLS, type PeerProtocol, type Protocol, type ScenarioName, type ScenarioResult } from "./results.ts"
import { runRtt } from "./rtt.ts"
import { failedResult, type Measured, PATTERN_VARIANT, type Run } from "./scenario-run.ts"
import { RTT_PASSES } from "./shapes.ts"
import { runStream } from "./stream.ts"
import { openFloor, openPeerTarget, openTarget, TCP_PORT_VARIANT } from "./targets.ts"

export async function execute(run: Run, options: Options, durations: Durations): Promise<ScenarioResult> {
  const started = performance.now()
  let label =
    run.protocol === "echo" || run.protocol === "relay" || isPeer(run.protocol)
      ? run.protocol
      : run.external === null
        ? "dsmq"
        : `${run.external.host}:${run.external.port}`
  let measured: Measured
  try {
    const target =
      run.protocol === "echo" || run.protocol === "relay"
        ? await openFloor(run.protocol)
        : isPeer(run.protocol)
          ? await openPeerTarget(run.protocol)
          : await openTarget(options, run.external, run.id)
    label = target.label
    try {
      measured = run.scenario === "rtt" ? await runRtt(run, target, durations) : await runStream(run, target, durations)
    } catch (error) {
      const tail = target.stderrTail().trim()
      throw tail === "" ? error : new Error(`${(error as Error).message}; the server said: ${tail.split("\n").slice(-3).join(" | ")}`)
    } finally {
      await target.close()
    }
  } catch (error) {
    return failedResult(run, label, error, (performance.now() - started) / 1000)
  }
  return {
    id: run.id,
    scenario: run.scenario,
    protocol: run.protocol,
    variant: run.variant,
    target: label,
    ...measured,
    seconds: (performance.now() - started) / 1000,
    error: null,
  }
}

/** The peers --peers measures: those installed. */
export function installedPeers(options: Options): PeerProtocol[] {
  return options.peers ? PEER_PROTOCOLS.filter((peer) => findPeer(peer) !== null) : []
}

/** A line for each peer --peers cannot measure, saying how to install it. */
export function missingPeers(options: Options): { cell: string; reason: string }[] {
  if (!options.peers) return []
  return PEER_PROTOCOLS.filter((peer) => findPeer(peer) === null).map((peer) => ({
    cell: `--peers: ${PEER_PROGRAMS[peer].name}`,
    reason: `not installed, its rows are skipped (Debian: ${PEER_PROGRAMS[peer].install}; or set ${PEER_PROGRAMS[peer].variable} to the binary)`,
  }))
}

export function plan(options: Options): Run[] {
  const runs: Run[] = []
  const wanted = (scenario: ScenarioName): boolean => options.only.size === 0 || options.only.has(scenario)
  const floorWanted = (scenario: ScenarioName): boolean => wanted(scenario) || options.only.has("floor")
  const protocolWanted = (protocol: Protocol): boolean => options.protocols.size === 0 || options.protocols.has(protocol)
  const add = (scenario: ScenarioName, protocol: Protocol, variant: string | null = null, external: Options["against"] = null): void => {
    const floor = protocol === "echo" || protocol === "relay"
    // A peer runs with every scenario wanted, whatever --protocol chose for the broker.
    if (floor ? !floorWanted(scenario) : !wanted(scenario) || (!isPeer(protocol) && !protocolWanted(protocol))) return
    const id = [scenario, protocol, ...(variant === null ? [] : [variant])].join("/")
    runs.push({ id, scenario, protocol, variant, external })
  }
  const peers = installedPeers(options)
  const rttOrder: Protocol[] = ["echo", "relay", ...PROTOCOLS, ...peers]
  for (let pass = 0; pass < RTT_PASSES; pass++) {
    for (const protocol of pass % 2 === 0 ? rttOrder : [...rttOrder].reverse()) {
      add("rtt", protocol)
      // The same WebSocket round trip through the TCP port, beside the HTTP port's.
      if (protocol.startsWith("websocket")) add("rtt", protocol, TCP_PORT_VARIANT)
    }
  }
  for (const scenario of ["khz", "fanout"] as const) {
    add(scenario, "relay")
    for (const protocol of PROTOCOLS) add(scenario, protocol)
    for (const peer of peers) add(scenario, peer)
  }
  // The same khz load read through one pattern subscription per reader.
  add("khz", "binary-push", PATTERN_VARIANT)
  add("max", "binary-push", "single")
  add("max", "binary-push", "batched")
  add("max", "binary-pull", "single")
  add("max", "json-stream", "single")
  add("max", "websocket-binary-push", "single")
  add("max", "websocket-json", "single")
  for (const peer of peers) add("max", peer, "single")
  if (options.against !== null) {
    for (let pass = 0; pass < RTT_PASSES; pass++) add("rtt", "json-stream", null, options.against)
    for (const scenario of ["khz", "fanout"] as const) add(scenario, "json-stream", null, options.against)
    add("max", "json-stream", "single", options.against)
  }
  return runs
}
