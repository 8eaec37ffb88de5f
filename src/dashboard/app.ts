/**
 * The dashboard page: asks for a token when the broker wants one, then follows the live channel
 * and shows what each update carries: the overview cards, the rate chart, the topics and
 * connections tables, and the tail the user chose.
 */
import { checkAccess, storedToken, storeToken } from "./access.ts"
import { formatBytes, formatCount, formatDuration, formatLatency, formatRate, tableRow } from "./format.ts"
import { type ChannelState, LiveChannel } from "./live.ts"
import { RateChart } from "./rate-chart.ts"
import { TailView } from "./tail-view.ts"
import { TopicsTable } from "./topics-table.ts"
import type { BridgeState, ConnectionRow, StatsDocument, Update } from "./types.ts"

function element<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`the page has no #${id}`)
  return found as T
}

function setText(id: string, text: string): void {
  element(id).textContent = text
}

const statusBadge = element("status")
const dashboard = element("dashboard")
const prompt = element("token-prompt")
let chart: RateChart | null = null
const topics = new TopicsTable(
  element<HTMLTableElement>("topics-table"),
  element<HTMLInputElement>("topics-filter"),
  element("topics-count"),
)
const tail = new TailView(
  element<HTMLOListElement>("tail-list"),
  element("tail-status"),
  element<HTMLButtonElement>("tail-pause"),
  element<HTMLButtonElement>("tail-clear"),
)

const channel = new LiveChannel({
  update: show,
  state: showState,
  tailRefused: (text) => tail.refused(text),
})

function showState(state: ChannelState): void {
  statusBadge.dataset.state = state
  statusBadge.textContent = state
  if (state === "locked") askForToken("The token is not valid (or no longer).")
}

function show(update: Update): void {
  showOverview(update.overview)
  chart ??= new RateChart(element("rate-chart"))
  if (update.history !== undefined) chart.reset(update.history)
  chart.add(update.rate)
  if (update.topics !== undefined) topics.show(update.topics.list, update.topics.total, update.atMs)
  if (update.connections !== undefined) showConnections(update.connections.list, update.connections.total)
  if (update.tail !== undefined) tail.add(update.tail.messages, update.tail.skipped)
}

function showOverview(stats: StatsDocument): void {
  setText("server-line", `version ${stats.version} · up ${formatDuration(stats.uptimeSeconds)} · pid ${stats.pid}`)
  setText("card-connections", formatCount(stats.connections.total))
  setText(
    "card-protocols",
    Object.entries(stats.connections.byProtocol)
      .map(([protocol, count]) => `${protocol} ${count}`)
      .join(" · ") || "none",
  )
  setText("card-puts", formatRate(stats.puts.perSecond))
  setText("card-puts-total", `${formatCount(stats.puts.total)} in all, ${formatBytes(stats.puts.bytes)}`)
  setText("card-deliveries", formatRate(stats.deliveries.perSecond))
  setText("card-deliveries-total", `${formatCount(stats.deliveries.total)} in all, ${formatBytes(stats.deliveries.bytes)}`)
  const latency = stats.deliveryLatency
  setText("card-latency", formatLatency(latency.p50))
  setText(
    "card-latency-detail",
    `p90 ${formatLatency(latency.p90)} · p99 ${formatLatency(latency.p99)} · last ${Math.round(latency.windowSeconds)} s`,
  )
  setText("card-rss", formatBytes(stats.memory.rss))
  setText("card-memory-detail", `heap ${formatBytes(stats.memory.heapUsed)}`)
  const cap = stats.memory.maxMemory
  setText("card-store", formatBytes(stats.memory.storeBytes))
  setText(
    "card-store-detail",
    `${cap === null ? "no cap" : `of ${formatBytes(cap)}`} · ${formatCount(stats.store.messages)} messages in ${formatCount(stats.store.topics)} topics`,
  )
  setText("card-dropped", formatCount(stats.retention.dropped))
  const errors = Object.entries(stats.errors).filter(([, count]) => count > 0)
  setText("card-errors", formatCount(errors.reduce((sum, [, count]) => sum + count, 0)))
  setText("card-errors-detail", errors.map(([code, count]) => `${code} ${count}`).join(" · "))
  showBridge(stats.bridge)
}

function showBridge(bridge: BridgeState | null): void {
  element("card-bridge").hidden = bridge === null
  if (bridge === null) return
  setText("card-bridge-state", bridge.connected ? "connected" : "down")
  element("card-bridge-state").classList.toggle("error", !bridge.connected)
  const lag = bridge.exports.reduce((sum, rule) => sum + rule.lagMessages, 0)
  const where = bridge.connected ? (bridge.server ?? "") : (bridge.lastError ?? "connecting")
  setText(
    "card-bridge-detail",
    `${formatCount(bridge.exported)} out, ${formatCount(bridge.imported)} in, ${formatCount(lag)} waiting · ${where}`,
  )
}

function showConnections(rows: readonly ConnectionRow[], total: number): void {
  const body = element<HTMLTableElement>("connections-table").tBodies[0]!
  body.replaceChildren(
    ...rows.map((row) =>
      tableRow([
        [row.protocol, false],
        [row.address, false],
        [row.principal ?? "–", false],
        [formatCount(row.subscriptions), true],
        [formatBytes(row.bufferedBytes), true],
        [formatDuration(row.ageSeconds), true],
      ]),
    ),
  )
  setText("connections-count", rows.length < total ? `${rows.length} of ${total}` : String(total))
}

function askForToken(why: string | null): void {
  channel.close()
  dashboard.hidden = true
  prompt.hidden = false
  const error = element("token-error")
  error.hidden = why === null
  error.textContent = why ?? ""
  element<HTMLInputElement>("token-input").focus()
}

element<HTMLFormElement>("token-form").addEventListener("submit", (event) => {
  event.preventDefault()
  const input = element<HTMLInputElement>("token-input")
  storeToken(input.value.trim())
  input.value = ""
  void start()
})

element<HTMLFormElement>("tail-form").addEventListener("submit", (event) => {
  event.preventDefault()
  const name = element<HTMLInputElement>("tail-input").value.trim()
  tail.watch(name === "" ? null : name)
  channel.open(name === "" ? null : name)
})

async function start(): Promise<void> {
  const access = await checkAccess()
  if (access === "needs-token") {
    const hadToken = storedToken() !== null
    storeToken(null)
    askForToken(hadToken ? "That token is not valid." : null)
    statusBadge.dataset.state = "locked"
    statusBadge.textContent = "token needed"
    return
  }
  prompt.hidden = true
  dashboard.hidden = false
  channel.open(null)
}

void start()
