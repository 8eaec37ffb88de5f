/**
 * The peers of `--peers`: nats-server and mosquitto, Debian's packages (or the binaries named by
 * DSMQ_NATS_SERVER and DSMQ_MOSQUITTO), each spawned fresh per row on 127.0.0.1, like the
 * broker, and always stopped. A peer that is not installed is skipped with a line saying how to
 * install it.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { PeerKind } from "./peer-wire.ts"
import { type Spawned, spawnListening } from "./processes.ts"

interface PeerProgram {
  /** The executable's name, and the variable that may name another binary. */
  readonly name: string
  readonly variable: string
  readonly install: string
}

export const PEER_PROGRAMS: Readonly<Record<PeerKind, PeerProgram>> = {
  nats: { name: "nats-server", variable: "DSMQ_NATS_SERVER", install: "apt-get install -y nats-server" },
  mqtt: { name: "mosquitto", variable: "DSMQ_MOSQUITTO", install: "apt-get install -y mosquitto" },
}

/** The peer's executable, or null when it is not installed (Debian puts both in /usr/sbin). */
export function findPeer(kind: PeerKind): string | null {
  const program = PEER_PROGRAMS[kind]
  const configured = process.env[program.variable]
  if (configured !== undefined && configured !== "") return configured
  return Bun.which(program.name) ?? Bun.which(program.name, { PATH: "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin" })
}

/** "nats-server 2.9.10", from the program's own version output (the name alone if it gives none). */
export function peerVersion(kind: PeerKind): string {
  const program = PEER_PROGRAMS[kind]
  const executable = findPeer(kind)
  if (executable === null) return program.name
  const result = Bun.spawnSync([executable, kind === "nats" ? "--version" : "-h"], { stdout: "pipe", stderr: "pipe" })
  const text = `${result.stdout.toString()}${result.stderr.toString()}`
  const version = /v?(\d+\.\d+\.\d+)/.exec(text)?.[1]
  return version === undefined ? program.name : `${program.name} ${version}`
}

export interface SpawnedPeer extends Spawned {
  readonly version: string
}

export async function spawnPeer(kind: PeerKind): Promise<SpawnedPeer> {
  const executable = findPeer(kind)
  if (executable === null) throw new Error(`${PEER_PROGRAMS[kind].name} is not installed (${PEER_PROGRAMS[kind].install})`)
  const version = peerVersion(kind)
  if (kind === "nats") {
    // Core NATS, no JetStream: -p -1 picks a free port, which it logs.
    const spawned = await spawnListening(
      [executable, "-a", "127.0.0.1", "-p", "-1"],
      /Listening for client connections on (?<host>[\d.]+):(?<port>\d+)[\s\S]*Server is ready/,
    )
    return { ...spawned, version }
  }
  // mosquitto takes no port 0 (a listener on port 0 is a Unix socket): a port just freed by the
  // kernel, in a configuration file of its own.
  const dir = mkdtempSync(join(tmpdir(), "dsmq-bench-mosquitto-"))
  const port = freePort()
  const config = join(dir, "mosquitto.conf")
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence false",
      "log_dest stderr",
      // Without this, mosquitto drops QoS 0 messages for a reader with 1,000 packets queued; the
      // broker keeps a slow reader's messages, so the comparison keeps them too.
      "max_queued_messages 0",
      "",
    ].join("\n"),
  )
  try {
    // It logs "Opening … socket" before it listens, and "… running" once every listener is open.
    const spawned = await spawnListening(
      [executable, "-c", config],
      /Opening ipv4 listen socket on port (?<port>\d+)[\s\S]*mosquitto version \S+ running/,
      "127.0.0.1",
    )
    return {
      ...spawned,
      version,
      stop: async () => {
        await spawned.stop()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = listener.port
  listener.stop(true)
  return port
}
