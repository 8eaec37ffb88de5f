/**
 * A headless Chromium for the dashboard's tests, driven by puppeteer-core: the system's browser
 * (Debian's `chromium`, or DSMQ_CHROMIUM), never a download. Where none is installed the browser
 * tests are skipped with a note, unless DSMQ_REQUIRE_BROWSER=1 (as .ci/run sets) makes that a failure.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import puppeteer, { type Browser } from "puppeteer-core"

const CANDIDATES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"]

export function findChromium(): string | null {
  const configured = process.env.DSMQ_CHROMIUM
  if (configured !== undefined && configured !== "") return configured
  for (const name of CANDIDATES) {
    const path = Bun.which(name)
    if (path !== null) return path
  }
  return null
}

export const CHROMIUM = findChromium()

if (CHROMIUM === null) {
  if (process.env.DSMQ_REQUIRE_BROWSER === "1") throw new Error("no Chromium found (install Debian's chromium, or set DSMQ_CHROMIUM)")
  console.warn("browser tests skipped: no Chromium found (install Debian's chromium, or set DSMQ_CHROMIUM)")
}

export async function launchBrowser(): Promise<Browser> {
  if (CHROMIUM === null) throw new Error("no Chromium")
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // No sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check"],
  })
}

/** Where the tests' screenshots go (git-ignored). */
export const SCREENSHOT_DIR = join(import.meta.dir, "..", "test-output", "screenshots")

export function screenshotPath(name: string): `${string}.png` {
  mkdirSync(SCREENSHOT_DIR, { recursive: true })
  return `${join(SCREENSHOT_DIR, name)}.png`
}
