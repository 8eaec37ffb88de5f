/** The server's stats in the Prometheus text exposition format (version 0.0.4). */
import { WireProtocol } from "../protocol/detect.ts"
import type { ServerStats } from "../server/stats.ts"

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

export function formatMetrics(stats: ServerStats): string {
  const lines: string[] = []
  const metric = (name: string, type: string, help: string, samples: [labels: string, value: number][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${formatValue(value)}`)
  }
  const single = (name: string, type: string, help: string, value: number): void => metric(name, type, help, [["", value]])

  single("dsmq_messages_put_total", "counter", "Messages stored.", stats.puts)
  single("dsmq_put_bytes_total", "counter", "Payload bytes of the messages stored.", stats.bytesPut)
  single("dsmq_messages_delivered_total", "counter", "Messages handed to readers: get replies, pushes, HTTP and SSE.", stats.deliveries)
  single("dsmq_delivered_bytes_total", "counter", "Payload bytes of the messages delivered.", stats.bytesDelivered)
  const protocols = [...Object.values(WireProtocol), "undecided"]
  metric(
    "dsmq_connections",
    "gauge",
    "Open connections, by protocol.",
    protocols.map((protocol) => [`{protocol="${protocol}"}`, stats.connectionsByProtocol[protocol] ?? 0]),
  )
  single("dsmq_subscribers", "gauge", "Binary-protocol subscriptions and SSE streams.", stats.subscribers)
  single("dsmq_stored_messages", "gauge", "Messages in the store.", stats.storedMessages)
  single("dsmq_stored_bytes", "gauge", "Payload bytes of the messages in the store.", stats.storedBytes)
  single("dsmq_topics", "gauge", "Topics in the store.", stats.topics)
  single(
    "dsmq_topics_reclaimed_total",
    "counter",
    "Topics removed once retention emptied them and no cursor kept them.",
    stats.topicsReclaimed,
  )
  single(
    "dsmq_store_used_bytes",
    "gauge",
    "What the store's cap counts: payloads, per-message overhead, topics, named cursors.",
    stats.storeUsedBytes,
  )
  single("dsmq_buffered_bytes", "gauge", "Bytes held for all clients: input, queued requests, unsent replies.", stats.bufferedBytes)
  single("dsmq_buffered_bytes_limit", "gauge", "The server-wide budget for them (--max-buffered-bytes).", stats.maxBufferedBytes)
  single("dsmq_budget_paused_connections", "gauge", "Connections paused because the budget is spent.", stats.budgetPausedConnections)
  single("dsmq_cursors", "gauge", "Topic cursors held by open readers (each at most --max-cursors).", stats.cursors)
  single(
    "dsmq_messages_dropped_total",
    "counter",
    "Messages removed by retention (slow readers never cause drops: they are caught up from the store).",
    stats.droppedByRetention,
  )
  metric(
    "dsmq_errors_total",
    "counter",
    "Errors reported to clients, by code.",
    Object.entries(stats.errors).map(([code, count]) => [`{code="${code}"}`, count]),
  )
  const latency = stats.deliveryLatency
  lines.push("# HELP dsmq_delivery_latency_seconds Time from put to delivery.", "# TYPE dsmq_delivery_latency_seconds histogram")
  latency.bounds.forEach((bound, i) => {
    lines.push(`dsmq_delivery_latency_seconds_bucket{le="${bound}"} ${latency.cumulative[i]}`)
  })
  lines.push(
    `dsmq_delivery_latency_seconds_bucket{le="+Inf"} ${latency.count}`,
    `dsmq_delivery_latency_seconds_sum ${formatValue(latency.sum)}`,
    `dsmq_delivery_latency_seconds_count ${latency.count}`,
  )
  single("dsmq_process_cpu_seconds_total", "counter", "CPU time used by the server process.", stats.cpuMicros / 1e6)
  const bridge = stats.bridge
  if (bridge !== null) {
    const rule = (pattern: string) => `{rule="${escapeLabel(pattern)}"}`
    single("dsmq_bridge_connected", "gauge", "1 while the NATS bridge is connected, else 0.", bridge.connected ? 1 : 0)
    metric(
      "dsmq_bridge_exported_total",
      "counter",
      "Messages the bridge published to NATS (acknowledged), by export rule.",
      bridge.exports.map((e) => [rule(e.pattern), e.exported]),
    )
    metric(
      "dsmq_bridge_imported_total",
      "counter",
      "Messages the bridge put here from NATS, by import rule.",
      bridge.imports.map((i) => [rule(i.pattern), i.imported]),
    )
    metric(
      "dsmq_bridge_lag_messages",
      "gauge",
      "Messages of an export rule not yet acknowledged by NATS (still in the store).",
      bridge.exports.map((e) => [rule(e.pattern), e.lagMessages]),
    )
  }
  return `${lines.join("\n")}\n`
}

/** A label value as the text format wants it: backslash, quote and newline escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")
}

function formatValue(value: number): string {
  return Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN"
}
