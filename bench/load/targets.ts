import { withTimeout } from "../lib/wait.ts"
import type { Options } from "./options.ts"
import type { PeerKind } from "./peer-wire.ts"
import { spawnPeer } from "./peers.ts"
import { spawnBroker, spawnEcho } from "./processes.ts"
import { BinaryLink } from "./wire.ts"

export interface Target {
  /** "dsmq" for a broker spawned here, or HOST:PORT. */
  readonly label: string
  readonly host: string
  readonly port: number
  /** A binary connection for STATS (spawned brokers only). */
  readonly control: BinaryLink | null
  /** The WebSocket endpoint the broker announced (ws://HOST:HTTP_PORT/); null for the floors and --against. */
  readonly websocketUrl: string | null
  /** The spawned broker's process id, for its user/system CPU split from /proc. */
  readonly pid: number | null
  /** What the spawned process last wrote to stderr (for errors). */
  stderrTail(): string
  close(): Promise<void>
}

export async function openFloor(kind: "echo" | "relay"): Promise<Target> {
  const floor = await spawnEcho(kind === "relay")
  return {
    label: kind,
    host: floor.host,
    port: floor.port,
    control: null,
    websocketUrl: null,
    pid: floor.pid,
    stderrTail: floor.stderrTail,
    close: () => floor.stop(),
  }
}

/** A peer (nats-server or mosquitto), spawned for one row; labelled with its program and version. */
export async function openPeerTarget(kind: PeerKind): Promise<Target> {
  const peer = await spawnPeer(kind)
  return {
    label: peer.version,
    host: peer.host,
    port: peer.port,
    control: null,
    websocketUrl: null,
    pid: peer.pid,
    stderrTail: peer.stderrTail,
    close: () => peer.stop(),
  }
}

export async function openTarget(options: Options, external: Options["against"], profileName: string): Promise<Target> {
  if (external !== null) {
    return {
      label: `${external.host}:${external.port}`,
      host: external.host,
      port: external.port,
      control: null,
      websocketUrl: null,
      pid: null,
      stderrTail: () => "",
      close: async () => {},
    }
  }
  const server = await spawnBroker({
    env: options.serverEnv,
    ...(options.cpuProfileDir === null ? {} : { cpuProfileDir: options.cpuProfileDir, profileName: profileName.replaceAll("/", "-") }),
  })
  try {
    const control = await BinaryLink.open(server.host, server.port)
    return {
      label: "dsmq",
      host: server.host,
      port: server.port,
      control,
      websocketUrl: server.websocketUrl,
      pid: server.pid,
      stderrTail: server.stderrTail,
      close: async () => {
        await withTimeout(control.close(), 2000)
        await server.stop()
      },
    }
  } catch (error) {
    await server.stop()
    throw error
  }
}

/** The target's WebSocket endpoint; throws if it announced none (a floor, --against, a broker without HTTP). */
export function websocketUrlOf(target: Target): string {
  if (target.websocketUrl === null) throw new Error(`${target.label} announced no WebSocket endpoint`)
  return target.websocketUrl
}

/** The rtt variant whose WebSocket goes to the broker's TCP port (HTTP detected and relayed there). */
export const TCP_PORT_VARIANT = "tcp port"

/** The same broker, with its WebSocket endpoint on the TCP port instead of the HTTP port. */
export function viaTcpPort(target: Target): Target {
  return { ...target, websocketUrl: `ws://${target.host}:${target.port}/` }
}
