/**
 * Regenerates the README's screenshot of the dashboard (docs/dashboard.png): a server on free
 * loopback ports, a few instruments putting to lab/..., and the page in headless Chromium
 * (the system's, as the browser tests use) watching a tail of lab/#.
 *
 *   bun run scripts/screenshot-dashboard.ts [--out FILE]
 */
import { join } from "node:path"
import { parseArgs } from "node:util"
import { connect } from "../src/client.ts"
import { startServer } from "../src/start-server.ts"
import { launchBrowser } from "../test/browser.ts"

const { values } = parseArgs({ options: { out: { type: "string" } } })
const out = values.out ?? join(import.meta.dir, "..", "docs", "dashboard.png")
const WAIT_MS = 15_000

const server = startServer({ host: "127.0.0.1", port: 0, httpPort: 0, maxMessageBytes: 1 << 20, allowShutdown: false })
const client = await connect({ port: server.port })
const readers = await Promise.all([1, 2].map(() => connect({ port: server.port })))
for (const reader of readers) {
  const subscription = await reader.subscribe("lab/#")
  void (async () => {
    for await (const _message of subscription) {
      // Read and dropped: deliveries for the chart.
    }
  })()
}
// Instruments at different rates: a thermometer, a pressure gauge, a camera's frame counter.
let tick = 0
const instruments = setInterval(() => {
  tick++
  client.put("lab/room1/temperature", JSON.stringify({ celsius: +(21 + Math.sin(tick / 40)).toFixed(2) }))
  if (tick % 2 === 0) client.put("lab/room1/pressure", JSON.stringify({ hPa: +(1013 + Math.cos(tick / 30)).toFixed(1) }))
  if (tick % 5 === 0) client.put("lab/camera/frames", new Uint8Array([0x89, 0x50, 0x4e, 0x47, tick & 0xff]))
  if (tick % 50 === 0) client.put("ops/heartbeat", "ok")
}, 10)

const browser = await launchBrowser()
try {
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 900, deviceScaleFactor: 1 })
  await page.goto(`http://127.0.0.1:${server.httpPort}/`)
  await page.waitForSelector('#status[data-state="live"]', { timeout: WAIT_MS })
  await page.type("#tail-input", "lab/#")
  await page.click('#tail-form button[type="submit"]')
  await page.waitForSelector("li.tail-message", { timeout: WAIT_MS })
  // Enough samples for the chart to show a line (the server samples once a second).
  await page.waitForSelector('#rate-chart[data-points="8"]', { timeout: WAIT_MS })
  await page.screenshot({ path: out as `${string}.png`, fullPage: true })
  console.log(`wrote ${out}`)
} finally {
  clearInterval(instruments)
  await browser.close()
  await client.close()
  for (const reader of readers) await reader.close()
  server.stopNow()
}
