/** `dsmq topics [PATTERN]` and `dsmq stats`: what the server holds, as tables for people or JSON for scripts. */
import type { TopicEntry } from "../broker/catalogue.ts"
import { CommandLineError, humanBytes } from "../config/values.ts"
import type { ServerStats } from "../server/stats.ts"
import { asking, CLIENT_HELP, connectTo, type Env, ExitCode, readClientCommand, targetOf } from "./command-line.ts"
import { table } from "./output.ts"

export const TOPICS_HELP = `Usage: dsmq topics [PATTERN] [options]

Lists the topics the server stores (those PATTERN matches, like lab/#), with their message
counts, bytes, newest sequence number and put time, and subscribers.

  --json           one JSON array of {"topic", "messages", "bytes", "firstSeq", "lastSeq",
                   "lastPutAt", "subscribers"}

${CLIENT_HELP}
`

export const STATS_HELP = `Usage: dsmq stats [options]

Prints the server's counters: connections, messages put and delivered, what is stored,
errors reported to clients.

  --json           the counters as one JSON object (the binary STATS reply)

${CLIENT_HELP}
`

/** Topics asked for per page: the protocol's largest page. */
const PAGE = 10_000

export async function runTopics(argv: readonly string[], env: Env): Promise<number> {
  const command = readClientCommand(argv, { json: { type: "boolean" } }, TOPICS_HELP)
  if (command === null) return ExitCode.ok
  const { values, positionals } = command
  if (positionals.length > 1) throw new CommandLineError(`topics takes one PATTERN, got ${positionals.join(" ")}`)
  const target = targetOf(values, env)
  await using client = await connectTo(target)
  const entries: TopicEntry[] = []
  await asking(target, async () => {
    let after: string | undefined = ""
    while (after !== undefined) {
      const page = await client.topics(positionals[0], { limit: PAGE, after })
      entries.push(...page.topics)
      after = page.next
    }
  })
  if (values.json) console.log(JSON.stringify(entries))
  else if (entries.length === 0) console.log(positionals[0] === undefined ? "no topics" : `no topics match ${positionals[0]}`)
  else {
    const rows = entries.map((entry) => [
      entry.topic,
      entry.messages,
      humanBytes(entry.bytes),
      entry.lastSeq ?? "-",
      entry.lastPutAt ?? "-",
      entry.subscribers,
    ])
    console.log(table(["TOPIC", "MESSAGES", "BYTES", "LAST SEQ", "LAST PUT (UTC)", "SUBSCRIBERS"], rows))
  }
  return ExitCode.ok
}

export async function runStats(argv: readonly string[], env: Env): Promise<number> {
  const command = readClientCommand(argv, { json: { type: "boolean" } }, STATS_HELP)
  if (command === null) return ExitCode.ok
  const { values, positionals } = command
  if (positionals.length > 0) throw new CommandLineError(`stats takes no arguments, got ${positionals.join(" ")}`)
  const target = targetOf(values, env)
  await using client = await connectTo(target)
  const stats = (await asking(target, () => client.stats())) as unknown as ServerStats
  console.log(values.json ? JSON.stringify(stats) : statsTable(stats))
  return ExitCode.ok
}

/** The counters a person looks at, one per line. */
export function statsTable(stats: ServerStats): string {
  const protocols = Object.entries(stats.connectionsByProtocol)
    .filter(([, count]) => count > 0)
    .map(([protocol, count]) => `${protocol} ${count}`)
  const errors = Object.entries(stats.errors)
    .filter(([, count]) => count > 0)
    .map(([code, count]) => `${code} ${count}`)
  const latency = stats.deliveryLatency
  const rows: [string, string | number][] = [
    ["connections", protocols.length === 0 ? stats.connections : `${stats.connections} (${protocols.join(", ")})`],
    ["subscribers", stats.subscribers],
    ["messages put", `${stats.puts} (${humanBytes(stats.bytesPut)})`],
    ["messages delivered", `${stats.deliveries} (${humanBytes(stats.bytesDelivered)})`],
    ["mean time from put to delivery", latency.count === 0 ? "-" : `${((latency.sum / latency.count) * 1e6).toFixed(0)} µs`],
    ["stored messages", `${stats.storedMessages} (${humanBytes(stats.storedBytes)})`],
    ["topics", stats.topics],
    ["last seq", stats.lastSeq],
    ["dropped by retention", stats.droppedByRetention],
    ["errors reported", errors.length === 0 ? 0 : errors.join(", ")],
    ["queued requests", stats.queuedRequests],
    ["most buffered by one connection", humanBytes(stats.maxConnectionBufferedBytes)],
    ["server CPU time", `${(stats.cpuMicros / 1e6).toFixed(2)} s`],
  ]
  const bridge = stats.bridge
  if (bridge !== null && bridge !== undefined) {
    const link = bridge.connected
      ? `connected to ${bridge.server}`
      : `not connected${bridge.lastError === null ? "" : `: ${bridge.lastError}`}`
    rows.push(["NATS bridge", link])
    for (const rule of bridge.exports) rows.push([`  export ${rule.pattern}`, `${rule.exported} sent, ${rule.lagMessages} waiting`])
    for (const rule of bridge.imports) rows.push([`  import ${rule.pattern}`, `${rule.imported} put, ${rule.dropped} dropped`])
  }
  return table(["COUNTER", "VALUE"], rows)
}
