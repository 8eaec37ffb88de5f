/**
 * deploy/: the systemd unit and its sysusers file. systemd checks them where it is installed;
 * everywhere, the unit's command line must be one `dsmq serve` accepts.
 */
import { afterAll, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArguments } from "../src/options.ts"

const ROOT = join(import.meta.dir, "..")
const UNIT = readFileSync(join(ROOT, "deploy", "dsmq.service"), "utf8")
const directory = mkdtempSync(join(tmpdir(), "dsmq-deploy-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

const hasSystemd = Bun.which("systemd-analyze") !== null

function execStart(): string[] {
  const line = /^ExecStart=(.+)$/m.exec(UNIT)?.[1]
  if (line === undefined) throw new Error("the unit has no ExecStart")
  return line.split(" ")
}

test("the unit runs dsmq serve with its configuration file and a database in its state directory, as its own user", () => {
  const [binary, command, ...args] = execStart()
  expect([binary, command]).toEqual(["/usr/local/bin/dsmq", "serve"])
  expect(args).toEqual(["--config", "/etc/dsmq/dsmq.toml", "--db", "/var/lib/dsmq/dsmq.db"])
  expect(UNIT).toMatch(/^User=dsmq$/m)
  expect(UNIT).toMatch(/^StateDirectory=dsmq$/m)
  expect(UNIT).toMatch(/^Restart=on-failure$/m)
  expect(UNIT).toMatch(/^ProtectSystem=strict$/m)
  // The same flags, with the shipped example as /etc/dsmq/dsmq.toml, are a valid server.
  const withExample = args.map((arg) => (arg === "/etc/dsmq/dsmq.toml" ? join(ROOT, "dsmq.example.toml") : arg))
  expect(parseArguments(withExample)).toMatchObject({ kind: "serve", options: { port: 30008, db: "/var/lib/dsmq/dsmq.db" } })
})

test.skipIf(!hasSystemd)("systemd-analyze verify accepts the unit, and rates its hardening OK", async () => {
  // verify checks that ExecStart's binary exists: point it at one that does.
  const unit = join(directory, "dsmq.service")
  writeFileSync(unit, UNIT.replace("ExecStart=/usr/local/bin/dsmq", `ExecStart=${process.execPath}`))
  const verify = Bun.spawn(["systemd-analyze", "verify", unit], { stdout: "pipe", stderr: "pipe" })
  expect([await verify.exited, await new Response(verify.stderr).text()]).toEqual([0, ""])
  const security = Bun.spawn(["systemd-analyze", "security", "--offline=yes", unit], { stdout: "pipe", stderr: "pipe" })
  const report = await new Response(security.stdout).text()
  await security.exited
  const exposure = Number(/Overall exposure level for dsmq\.service: ([\d.]+)/.exec(report)?.[1])
  // 0 is fully locked down, 10 not at all; a JIT-compiling server cannot deny writable code.
  expect(exposure).toBeLessThan(4)
})

test.skipIf(Bun.which("systemd-sysusers") === null)("systemd-sysusers would create the dsmq user and group", async () => {
  const sysusers = Bun.spawn(["systemd-sysusers", "--dry-run", join(ROOT, "deploy", "dsmq.sysusers")], { stdout: "pipe", stderr: "pipe" })
  const [code, stdout, stderr] = await Promise.all([
    sysusers.exited,
    new Response(sysusers.stdout).text(),
    new Response(sysusers.stderr).text(),
  ])
  expect(code).toBe(0)
  expect(`${stdout}${stderr}`).toMatch(/user 'dsmq'/)
})
