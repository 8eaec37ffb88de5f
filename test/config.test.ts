/** `dsmq serve --config FILE`, DSMQ_* variables and --print-config: every option from three places, one precedence. */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SETTINGS } from "../src/config/settings.ts"
import { type ParsedCommand, parseArguments } from "../src/options.ts"
import type { ServerOptions } from "../src/start-server.ts"
import { SERVER } from "./server-process.ts"

const directory = mkdtempSync(join(tmpdir(), "dsmq-config-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))
const EXAMPLE = join(import.meta.dir, "..", "dsmq.example.toml")

let fileCount = 0
function configFile(text: string): string {
  const path = join(directory, `config-${++fileCount}.toml`)
  writeFileSync(path, text)
  return path
}

function serveOptions(parsed: ParsedCommand): ServerOptions {
  if (parsed.kind !== "serve") throw new Error(`expected serve, got ${parsed.kind}`)
  return parsed.options
}

describe("the configuration file", () => {
  test("holds options by their flag names, with units, and paths relative to its folder", () => {
    const path = configFile(`
port = 4000
max-message-bytes = "512KiB"
idle-timeout = "5m"
shutdown-timeout = "500ms"
allow-shutdown = true
db = "data.db"
sync = "full"
max-age = "10m"
`)
    expect(serveOptions(parseArguments(["--config", path]))).toMatchObject({
      port: 4000,
      httpPort: 4001,
      maxMessageBytes: 512 * 1024,
      idleTimeoutSeconds: 300,
      shutdownTimeoutMs: 500,
      allowShutdown: true,
      db: join(directory, "data.db"),
      sync: "full",
      retention: { defaults: { maxAgeMs: 600_000 } },
    })
  })

  test("a flag wins over the environment, the environment over the file, the file over the default", () => {
    const path = configFile('port = 4000\nmax-messages = 10\nfull-policy = "reject"\nallow-shutdown = true\n')
    const env = { DSMQ_PORT: "5000", DSMQ_MAX_MESSAGES: "20", DSMQ_ALLOW_SHUTDOWN: "0" }
    const options = serveOptions(parseArguments(["--config", path, "--port", "6000"], env))
    expect(options.port).toBe(6000)
    expect(options.retention?.defaults.maxMessages).toBe(20)
    expect(options.retention?.defaults.policy).toBe("reject")
    expect(options.allowShutdown).toBe(false)
    expect(serveOptions(parseArguments([], { DSMQ_CONFIG: path })).port).toBe(4000)
    expect(serveOptions(parseArguments([])).maxMessageBytes).toBe(1024 * 1024)
  })

  test("every option has an environment variable named after its flag", () => {
    // One value each kind can take, so that a variable the reader skipped would show.
    const samples: Record<string, string> = {
      host: "::1",
      sync: "full",
      "full-policy": "reject",
      "max-buffered-bytes": "64MiB",
      "bridge-nats": "nats://127.0.0.1:4222",
      "bridge-export": "lab/#",
      "bridge-import": "site2/#",
    }
    for (const [name, setting] of Object.entries(SETTINGS)) {
      if (setting.kind === "switch" || ("isPath" in setting && setting.isPath)) continue
      const variable = `DSMQ_${name.toUpperCase().replaceAll("-", "_")}`
      const value = samples[name] ?? setting.default ?? "7"
      // A bridge setting alone is refused (a bridge needs a server and a rule): give both with it.
      const bridge = name.startsWith("bridge-") ? { DSMQ_BRIDGE_NATS: samples["bridge-nats"]!, DSMQ_BRIDGE_EXPORT: "lab/#" } : {}
      const parsed = parseArguments(["--print-config", ...(name === "sync" ? ["--db", join(directory, "x.db")] : [])], {
        ...bridge,
        [variable]: value,
      })
      expect(parsed.kind).toBe("print-config")
      expect(parsed.kind === "print-config" && parsed.text).toContain(`# ${variable}\n`)
    }
  })

  test.each([
    ["prot = 3\n", 'unknown key "prot"'],
    ['max-message-bytes = "lots"\n', "max-message-bytes must be a size"],
    ["allow-shutdown = 1\n", "allow-shutdown must be true or false"],
    ["port = [\n", "not valid TOML"],
    ["[[retention]]\npattern = 'a/#'\nmax-agee = 3\n", "retention: rule 1: unknown field max-agee"],
    ["[auth]\n[[auth.tokens]]\nname = 'x'\ntoken = 'short'\n", "at least 16 characters"],
  ])("%j is one error naming the file and the key", (text, message) => {
    const path = configFile(text)
    expect(() => parseArguments(["--config", path])).toThrow(`${path}: `)
    expect(() => parseArguments(["--config", path])).toThrow(message)
  })

  test("a missing file is named", () => {
    expect(() => parseArguments(["--config", join(directory, "missing.toml")])).toThrow("missing.toml: no such file")
  })

  test("tokens and retention rules come from its tables", () => {
    const path = configFile(`
allow-anonymous-legacy = true
[auth.anonymous-legacy]
read = ["lab/#"]
write = []
[[auth.tokens]]
name = "robot"
token = "0123456789abcdef-robot"
read = ["cmd/#"]
write = ["lab/#"]
[[retention]]
pattern = "lab/camera/#"
max-messages = 5
max-topic-bytes = "1MiB"
full-policy = "reject"
`)
    expect(serveOptions(parseArguments(["--config", path]))).toMatchObject({
      auth: {
        tokens: [{ name: "robot", token: "0123456789abcdef-robot", read: ["cmd/#"], write: ["lab/#"] }],
        anonymousLegacy: { read: ["lab/#"], write: [] },
      },
      retention: { rules: [{ pattern: "lab/camera/#", limits: { maxMessages: 5, maxBytes: 1024 * 1024, policy: "reject" } }] },
    })
  })

  test("the shipped example loads, commented parts included", () => {
    const example = readFileSync(EXAMPLE, "utf8")
    expect(serveOptions(parseArguments(["--config", EXAMPLE]))).toMatchObject({ host: "127.0.0.1", port: 30008 })
    // Uncommenting the token tables and the legacy switch must give a valid file too.
    // Only the tokens part: other commented tables (the bridge) have keys of the same names.
    const tokensAt = example.indexOf("# --- Tokens")
    expect(tokensAt).toBeGreaterThan(0)
    const uncommented =
      example.slice(0, tokensAt).replace(/^# (allow-anonymous-legacy = )/m, "$1") +
      example
        .slice(tokensAt)
        .replace(/^# (\[\[?auth[^\]]*\]\]?)/gm, "$1")
        .replace(/^# ((?:name|token|read|write) = )/gm, "$1")
    const options = serveOptions(parseArguments(["--config", configFile(uncommented)]))
    expect(options.auth?.tokens.map((token) => token.name)).toEqual(["instruments", "dashboard"])
    expect(options.auth?.anonymousLegacy).toEqual({ read: ["lab/#"], write: [] })
  })
})

test("the README's table and the example file document every key", () => {
  const readme = readFileSync(join(import.meta.dir, "..", "README.md"), "utf8")
  const example = readFileSync(EXAMPLE, "utf8")
  for (const name of Object.keys(SETTINGS)) {
    const variable = `DSMQ_${name.toUpperCase().replaceAll("-", "_")}`
    expect({ name, inReadme: new RegExp(`^\\| \`${name}\` \\| \`--${name}[^\`]*\` \\| \`${variable}\` \\|`, "m").test(readme) }).toEqual({
      name,
      inReadme: true,
    })
    // Bridge settings live in the file's [bridge] table, without the "bridge-" in front.
    const key = name.startsWith("bridge-") ? name.slice("bridge-".length) : name
    const inExample =
      key === "export" || key === "import" ? example.includes(`[[bridge.${key}]]`) : new RegExp(`^(# )?${key} = `, "m").test(example)
    expect({ name, inExample }).toEqual({ name, inExample: true })
  }
})

describe("--print-config", () => {
  test("says where each setting came from and redacts tokens", () => {
    const path = configFile(
      'max-age = "10m"\n[[auth.tokens]]\nname = "robot"\ntoken = "0123456789abcdef-secret"\nread = ["#"]\nwrite = []\n',
    )
    const parsed = parseArguments(["--config", path, "--port", "0", "--print-config"], { DSMQ_MAX_MESSAGES: "50" })
    if (parsed.kind !== "print-config") throw new Error("expected print-config")
    expect(parsed.text).toContain("port = 0  # --port\n")
    expect(parsed.text).toContain("max-messages = 50  # DSMQ_MAX_MESSAGES\n")
    expect(parsed.text).toContain(`max-age = "10m"  # ${path}: max-age\n`)
    expect(parsed.text).toContain("max-connections = 1024  # default\n")
    expect(parsed.text).toContain('token = "<redacted>"')
    expect(parsed.text).not.toContain("secret")
  })

  test("prints a file that reads back to the same settings", () => {
    const args = [
      "--port",
      "4100",
      "--max-message-bytes",
      "1.5KiB",
      "--idle-timeout",
      "90",
      "--db",
      join(directory, "r.db"),
      "--max-age",
      "2h",
    ]
    const path = configFile('[[retention]]\npattern = "a/+"\nmax-messages = "none"\nmax-age = "1500ms"\n')
    const original = parseArguments([...args, "--config", path, "--print-config"])
    if (original.kind !== "print-config") throw new Error("expected print-config")
    const reread = serveOptions(parseArguments(["--config", configFile(original.text)]))
    expect(reread).toEqual(serveOptions(parseArguments([...args, "--config", path])))
  })
})

describe("dsmq serve as a process", () => {
  async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const child = Bun.spawn(["bun", "run", SERVER, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" })
    const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()])
    return { code, stdout, stderr }
  }

  test("a bad --db path is one line and exit code 1", async () => {
    const result = await run(["--port", "0", "--db", "/nonexistent/dir/x.db"])
    expect(result).toEqual({
      code: 1,
      stdout: "",
      stderr: "dsmq: cannot open the database /nonexistent/dir/x.db: unable to open database file\n",
    })
  })

  test("a bad configuration file is one line and exit code 1, without the help", async () => {
    const path = configFile("prot = 3\n")
    expect(await run(["--config", path])).toEqual({ code: 1, stdout: "", stderr: `dsmq: ${path}: unknown key "prot"\n` })
  })

  test("--print-config prints and exits 0; --version prints the package version", async () => {
    const printed = await run(["--port", "0", "--print-config"])
    expect(printed.code).toBe(0)
    expect(printed.stdout).toStartWith("# The settings in force")
    const { version } = (await Bun.file(join(import.meta.dir, "..", "package.json")).json()) as { version: string }
    expect(await run(["--version"])).toEqual({ code: 0, stdout: `dsmq ${version} (Bun ${Bun.version})\n`, stderr: "" })
  })
})
