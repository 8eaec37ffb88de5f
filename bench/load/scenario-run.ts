import type { Options } from "./options.ts"
import type { Protocol, ScenarioName, ScenarioResult } from "./results.ts"

export interface Run {
  readonly id: string
  readonly scenario: ScenarioName
  readonly protocol: Protocol
  readonly variant: string | null
  /** null: the broker spawned for this run. */
  readonly external: Options["against"]
}

export type Measured = Omit<ScenarioResult, "id" | "scenario" | "protocol" | "variant" | "target" | "seconds" | "error">

export function failedResult(run: Run, target: string, error: unknown, seconds: number): ScenarioResult {
  return {
    id: run.id,
    scenario: run.scenario,
    protocol: run.protocol,
    variant: run.variant,
    target,
    description: "",
    config: {},
    sent: 0,
    expected: 0,
    received: 0,
    unique: 0,
    loss: 0,
    duplicates: 0,
    outOfOrder: 0,
    putRate: 0,
    deliveredRate: 0,
    latency: null,
    latencyFromSend: null,
    sendLag: null,
    drainMs: null,
    server: null,
    loadCpuPercent: 0,
    seconds,
    notes: [],
    error: error instanceof Error ? error.message : String(error),
  }
}

/** The khz variant whose readers subscribe to one pattern (PREFIX/#) instead of every writer's topic. */
export const PATTERN_VARIANT = "pattern"

/** A topic prefix unique to this run, so runs against a long-lived --against server do not mix. */
export function topicPrefix(run: Run): string {
  return `bench-${run.id.replaceAll("/", "-")}-${process.pid}-${Date.now().toString(36)}`
}

/** Topic names unique to this run: PREFIX-i, or PREFIX/wi for the pattern variant (one level below the prefix). */
export function topicNames(run: Run, count: number, prefix = topicPrefix(run)): string[] {
  const separator = run.variant === PATTERN_VARIANT ? "/w" : "-"
  return Array.from({ length: count }, (_, i) => `${prefix}${separator}${i}`)
}
