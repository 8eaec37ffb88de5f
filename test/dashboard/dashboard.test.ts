/**
 * The dashboard in a real headless Chromium (test/browser.ts): what a person at the page sees
 * as clients put, and what the token prompt keeps from them. Every wait is for something to
 * appear on the page, bounded by WAIT_MS; screenshots go to test-output/screenshots.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import type { Browser, Page } from "puppeteer-core"
import type { AuthConfig } from "../../src/auth/auth.ts"
import { CHROMIUM, launchBrowser, screenshotPath } from "../browser.ts"
import { startTestServer } from "../helpers.ts"

const WAIT_MS = 10_000
const TEST_MS = 60_000
const LAB = "lab-token-0123456789abcdefgh"
const ADMIN = "admin-token-0123456789abcdef"
const tokens: AuthConfig = {
  tokens: [
    { name: "admin", token: ADMIN, read: ["#"], write: ["#"] },
    { name: "lab", token: LAB, read: ["lab/#"], write: ["lab/#"] },
  ],
  anonymousLegacy: null,
}

type Server = ReturnType<typeof startTestServer>
const base = (server: Server) => `http://127.0.0.1:${server.httpPort}`

async function put(server: Server, topic: string, body: string, token?: string): Promise<void> {
  const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` }
  const response = await fetch(`${base(server)}/topics/${encodeURIComponent(topic)}`, { method: "POST", body, headers })
  expect(response.status).toBe(201)
}

let browser: Browser

/** A page on `server`, recording its errors and every URL it requests. */
async function open(server: Server, width = 1280): Promise<{ page: Page; errors: string[]; urls: string[] }> {
  const page = await browser.newPage()
  const errors: string[] = []
  const urls: string[] = []
  page.on("pageerror", (error) => errors.push(String(error)))
  page.on("request", (request) => urls.push(request.url()))
  await page.setViewport({ width, height: 900 })
  await page.goto(`${base(server)}/`)
  return { page, errors, urls }
}

/** Waits until the tail's status line contains `text`. */
const statusSays = (page: Page, text: string) =>
  page.waitForFunction(`document.getElementById("tail-status")?.textContent?.includes(${JSON.stringify(text)})`, { timeout: WAIT_MS })

const live = (page: Page) => page.waitForSelector('#status[data-state="live"]', { timeout: WAIT_MS })

describe.skipIf(CHROMIUM === null)("the dashboard in Chromium", () => {
  beforeAll(async () => {
    browser = await launchBrowser()
  })
  afterAll(async () => {
    await browser?.close()
  })

  test(
    "shows a new topic after a put, a message in the tail of lab/#, and rates that move",
    async () => {
      using server = startTestServer()
      const { page, errors } = await open(server)
      await live(page)
      await put(server, "lab/new-sensor", "1")
      await page.waitForSelector('tr[data-topic="lab/new-sensor"]', { timeout: WAIT_MS })

      await page.type("#tail-input", "lab/#")
      await page.click('#tail-form button[type="submit"]')
      await live(page)
      await statusSays(page, "Watching lab/#")
      await put(server, "office/door", "not in the tail")
      await put(server, "lab/temp", '{"celsius": 21.5}')
      const item = await page.waitForSelector('li.tail-message[data-topic="lab/temp"]', { timeout: WAIT_MS })
      expect(await item!.evaluate((element) => element.textContent)).toContain('{"celsius": 21.5}')
      expect(await page.$('li.tail-message[data-topic="office/door"]')).toBeNull()

      // Steady puts until the chart's newest point shows them (the server samples once a second).
      const putting = setInterval(() => void put(server, "lab/temp", "22"), 20)
      try {
        await page.waitForSelector('#rate-chart:not([data-last-puts="0"])', { timeout: WAIT_MS })
      } finally {
        clearInterval(putting)
      }
      const points = await page.$eval("#rate-chart", (element) => Number(element.getAttribute("data-points")))
      expect(points).toBeGreaterThan(0)
      expect(await page.$eval("#card-puts-total", (element) => element.textContent)).toMatch(/in all/)
      await page.screenshot({ path: screenshotPath("dashboard-live") })
      expect(errors).toEqual([])
      await page.close()
    },
    TEST_MS,
  )

  test(
    "pausing the tail holds new messages until it resumes; clearing empties it",
    async () => {
      using server = startTestServer()
      const { page, errors } = await open(server)
      await live(page)
      await page.type("#tail-input", "t")
      await page.click('#tail-form button[type="submit"]')
      await statusSays(page, "Watching t")
      await page.click("#tail-pause")
      await put(server, "t", "while paused")
      await statusSays(page, "1 waiting")
      expect(await page.$("li.tail-message")).toBeNull()
      await page.click("#tail-pause")
      await page.waitForSelector("li.tail-message", { timeout: WAIT_MS })
      await page.click("#tail-clear")
      expect(await page.$("li.tail-message")).toBeNull()
      expect(errors).toEqual([])
      await page.close()
    },
    TEST_MS,
  )

  test(
    "with a NATS bridge configured, a card says whether it is connected, and why not",
    async () => {
      // Port 9 (discard) on loopback: nothing answers there.
      const bridge = {
        servers: ["nats://127.0.0.1:9"],
        auth: null,
        tls: null,
        prefix: "",
        name: "a",
        exports: [{ pattern: "lab/#", stream: null }],
        imports: [],
      }
      using server = startTestServer({ bridge })
      await put(server, "lab/t", "waiting for NATS")
      const { page, errors } = await open(server)
      await page.waitForSelector("#card-bridge:not([hidden])", { timeout: WAIT_MS })
      await page.waitForFunction('document.getElementById("card-bridge-detail")?.textContent?.includes("1 waiting")', { timeout: WAIT_MS })
      expect(await page.$eval("#card-bridge-state", (element) => element.textContent)).toBe("down")
      expect(errors).toEqual([])
      await page.close()
    },
    TEST_MS,
  )

  test(
    "without a bridge there is no bridge card",
    async () => {
      using server = startTestServer()
      const { page } = await open(server)
      await live(page)
      await page.waitForFunction('document.getElementById("card-puts")?.textContent !== "–"', { timeout: WAIT_MS })
      expect(await page.$eval("#card-bridge", (element) => element.hasAttribute("hidden"))).toBe(true)
      await page.close()
    },
    TEST_MS,
  )

  test(
    "at phone width (375 px) nothing scrolls sideways",
    async () => {
      using server = startTestServer()
      await put(server, `lab/${"a-rather-long-instrument-name/".repeat(4)}temperature`, "21")
      const { page, errors } = await open(server, 375)
      await page.waitForSelector("tr[data-topic]", { timeout: WAIT_MS })
      // Strings, not functions: they run in the page, where the DOM's names exist.
      const scrollWidth = (await page.evaluate("document.documentElement.scrollWidth")) as number
      const viewport = (await page.evaluate("window.innerWidth")) as number
      expect(viewport).toBe(375)
      expect(scrollWidth).toBeLessThanOrEqual(viewport)
      await page.screenshot({ path: screenshotPath("dashboard-phone"), fullPage: true })
      expect(errors).toEqual([])
      await page.close()
    },
    TEST_MS,
  )

  test(
    "with tokens: only the prompt until a valid token is given, then only what it may read; the token never in a URL",
    async () => {
      using server = startTestServer({ auth: tokens })
      await put(server, "lab/temp", "21", ADMIN)
      await put(server, "office/door", "secret", ADMIN)
      const { page, errors, urls } = await open(server)
      await page.waitForSelector("#token-prompt:not([hidden])", { timeout: WAIT_MS })
      expect(await page.$eval("#dashboard", (element) => element.hasAttribute("hidden"))).toBe(true)
      expect(await page.$("tr[data-topic]")).toBeNull()
      await page.screenshot({ path: screenshotPath("dashboard-token-prompt") })

      await page.type("#token-input", "not-a-token-0123456789abcdef")
      await page.click('#token-form button[type="submit"]')
      await page.waitForSelector("#token-error:not([hidden])", { timeout: WAIT_MS })
      expect(await page.$eval("#dashboard", (element) => element.hasAttribute("hidden"))).toBe(true)

      await page.type("#token-input", LAB)
      await page.click('#token-form button[type="submit"]')
      await page.waitForSelector('tr[data-topic="lab/temp"]', { timeout: WAIT_MS })
      expect(await page.$('tr[data-topic="office/door"]')).toBeNull()
      // A tail the token may not read is refused, and said so.
      await page.type("#tail-input", "office/#")
      await page.click('#tail-form button[type="submit"]')
      await page.waitForSelector("#tail-status.error", { timeout: WAIT_MS })
      expect(await page.$eval("#tail-status", (element) => element.textContent)).toContain("may not read")

      expect(urls.filter((url) => url.includes(LAB) || url.includes("token"))).toEqual([])
      expect(await page.evaluate('sessionStorage.getItem("dsmq-dashboard-token")')).toBe(LAB)
      expect(errors).toEqual([])
      await page.close()
    },
    TEST_MS,
  )
})
