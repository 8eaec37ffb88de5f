/**
 * A real nats-server for the bridge's tests (Debian's `nats-server`, or DSMQ_NATS_SERVER): on a
 * free loopback port, with JetStream in a temporary store folder, restartable on the same port
 * and store. Where none is installed the NATS tests are skipped with a note, unless
 * DSMQ_REQUIRE_NATS=1 (as .ci/run sets) makes that a failure.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

function findNatsServer(): string | null {
  const configured = process.env.DSMQ_NATS_SERVER
  if (configured !== undefined && configured !== "") return configured
  return Bun.which("nats-server") ?? Bun.which("nats-server", { PATH: "/usr/sbin:/usr/local/sbin:/usr/bin" })
}

export const NATS_SERVER = findNatsServer()

if (NATS_SERVER === null) {
  if (process.env.DSMQ_REQUIRE_NATS === "1") throw new Error("no nats-server found (install Debian's nats-server, or set DSMQ_NATS_SERVER)")
  console.warn("NATS bridge tests skipped: no nats-server found (install Debian's nats-server, or set DSMQ_NATS_SERVER)")
}

const START_TIMEOUT_MS = 10_000

export interface NatsOptions {
  /** Clients must give this user and password. */
  readonly user?: { readonly name: string; readonly password: string }
  /** Clients must give this token. */
  readonly token?: string
  /** TLS only, with this certificate and key (PEM files). */
  readonly tls?: { readonly certFile: string; readonly keyFile: string }
}

export class NatsServer implements AsyncDisposable {
  readonly storeDir = mkdtempSync(join(tmpdir(), "dsmq-nats-"))
  readonly #options: NatsOptions
  #process: Bun.Subprocess<"ignore", "ignore", "pipe"> | null = null
  port = 0

  private constructor(options: NatsOptions) {
    this.#options = options
  }

  static async start(options: NatsOptions = {}): Promise<NatsServer> {
    const server = new NatsServer(options)
    await server.restart()
    return server
  }

  get url(): string {
    return `${this.#options.tls === undefined ? "nats" : "tls"}://127.0.0.1:${this.port}`
  }

  /** Starts it (again, on the same port and store once it had one) and resolves once it listens. */
  async restart(): Promise<void> {
    if (this.#process !== null) throw new Error("nats-server is running")
    const { user: account, token, tls } = this.#options
    const user = [
      ...(account === undefined ? [] : ["--user", account.name, "--pass", account.password]),
      ...(token === undefined ? [] : ["--auth", token]),
      ...(tls === undefined ? [] : ["--tls", "--tlscert", tls.certFile, "--tlskey", tls.keyFile]),
    ]
    // -p -1: a free port, which the server logs; a restart asks for the same one.
    const port = this.port === 0 ? "-1" : String(this.port)
    const child = Bun.spawn([NATS_SERVER!, "-a", "127.0.0.1", "-p", port, "-js", "-sd", this.storeDir, ...user], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    })
    this.#process = child
    const reader = child.stderr.getReader()
    const decoder = new TextDecoder()
    let log = ""
    const timer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS)
    try {
      for (;;) {
        const listening = /Listening for client connections on 127\.0\.0\.1:(\d+)/.exec(log)
        if (listening !== null && log.includes("Server is ready")) {
          this.port = Number(listening[1])
          break
        }
        const { value, done } = await reader.read()
        if (done) throw new Error(`nats-server exited before it was ready:\n${log}`)
        log += decoder.decode(value, { stream: true })
      }
    } finally {
      clearTimeout(timer)
    }
    // Keep draining its log so it never blocks on a full pipe.
    void (async () => {
      while (!(await reader.read()).done) {}
    })().catch(() => {})
  }

  /** Stops it (SIGKILL: as abrupt as a crash); its store folder stays for a restart. */
  async kill(): Promise<void> {
    const child = this.#process
    this.#process = null
    if (child === null) return
    child.kill("SIGKILL")
    await child.exited
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill()
    rmSync(this.storeDir, { recursive: true, force: true })
  }
}
