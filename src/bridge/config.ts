/** What the NATS bridge is told: servers, credentials, TLS, the subject prefix and its rules. */

export interface BridgeRule {
  /** A topic or pattern (`lab/#`). */
  readonly pattern: string
  /** A JetStream stream: exports publish into it (created for the rule's subjects if missing), imports consume from it; null: core NATS. */
  readonly stream: string | null
}

export type BridgeAuth =
  | { readonly kind: "token"; readonly token: string }
  | { readonly kind: "user"; readonly user: string; readonly pass: string }
  /** A NATS .creds file's contents (JWT and NKey seed). */
  | { readonly kind: "creds"; readonly creds: Uint8Array }

export interface BridgeTls {
  /** PEM contents. */
  readonly ca?: string
  readonly cert?: string
  readonly key?: string
}

export interface BridgeConfig {
  readonly servers: readonly string[]
  readonly auth: BridgeAuth | null
  readonly tls: BridgeTls | null
  /** Prepended to every subject (`site1` → `site1.lab.temp`); "" for none. */
  readonly prefix: string
  /** This broker's name in the Dsmq-Origin header, so that it drops its own messages coming back. */
  readonly name: string
  readonly exports: readonly BridgeRule[]
  readonly imports: readonly BridgeRule[]
}

/** Headers on every exported message; payloads cross unchanged. */
export const ORIGIN_HEADER = "Dsmq-Origin"
export const TOPIC_HEADER = "Dsmq-Topic"
export const SEQ_HEADER = "Dsmq-Seq"
