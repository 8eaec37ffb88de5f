/** What a connection needs from the server that owns it. */
import type { RelayTarget } from "../net/http-relay.ts"
import type { BufferBudget } from "./buffer-budget.ts"
import type { Connection } from "./connection.ts"
import type { SessionHost } from "./session.ts"

/** The server's side of every connection: the session host's shared part, and HTTP on the TCP port. */
export type ConnectionContext = Omit<
  SessionHost,
  "remoteAddress" | "outboundBytes" | "mayPush" | "handshakeDone" | "wake" | "closeAfterReplies" | "authenticated"
> & {
  /** The server-wide budget for bytes held for clients (--max-buffered-bytes). */
  readonly budget: BufferBudget
  /** Where HTTP on the TCP port goes, and what to call when a relayed client's WebSocket takes its place. */
  readonly httpRelay: { readonly target: RelayTarget; readonly handOver: (connection: Connection) => void } | null
}
