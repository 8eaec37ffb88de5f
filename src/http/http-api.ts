/**
 * The HTTP API on the HTTP port (the same port also upgrades `/` to WebSocket):
 *
 *   POST /topics/{topic}                 put the body (any bytes); 201 {"topic", "seq"}
 *   GET  /topics/{topic}?after=N&wait=S  the first message after sequence N (default 0);
 *                                        200 with the payload, 204 when none (after waiting
 *                                        up to S seconds for one, if asked)
 *   GET  /topics/{topic}?cursor=NAME     the next message for the named cursor NAME, which
 *                                        remembers its position (across restarts with --db)
 *   GET  /topics/{topic}/latest          the newest message; 200 or 204
 *   GET  /topics/{topic}/events          new messages as Server-Sent Events (resumes from
 *                                        Last-Event-ID or ?after=N)
 *   GET  /events?topic=T&topic=P...      the same for several topics or patterns, merged
 *   GET  /topics?match=P&limit=N&after=T the topic catalogue: names and counts, by name, paged
 *
 * Wherever a topic is read, a name with `+` or `#` is a pattern (`lab/#`): reads take the
 * oldest unread message among the matching topics, and say which topic it came from.
 *   GET  /healthz                        200 {"status":"ok"}
 *   GET  /metrics                        Prometheus text format
 *   GET  /stats                          the server's numbers as JSON (src/http/stats-document.ts)
 *   GET  /stats/connections?offset&limit the open connections, oldest first, a page at a time
 *   GET  /stats/live?tail=P&tailLimit=N  the dashboard's live channel (src/http/dashboard-feed.ts)
 *   GET  /                               the dashboard page (served by Bun.serve's routes)
 *
 * A topic is one path segment, percent-encoded ("a/b" is /topics/a%2Fb). Errors are JSON:
 * {"error": {"code": "...", "text": "..."}}.
 */
import type { Server } from "bun"
import { type Authenticator, bearerToken, type Principal } from "../auth/auth.ts"
import type { Broker, Delivery, TopicFilter } from "../broker/broker.ts"
import { listTopics } from "../broker/catalogue.ts"
import { BrokerError, type BrokerErrorCode } from "../broker/errors.ts"
import { MAX_CURSOR_NAME_BYTES } from "../protocol/binary/constants.ts"
import { ERROR_NAME_BY_BROKER_CODE, type ErrorName } from "../protocol/errors.ts"
import { MAX_WAIT_MS } from "../protocol/limits.ts"
import type { BufferBudget } from "../server/buffer-budget.ts"
import { readAccess } from "../server/read-access.ts"
import type { ServerStats } from "../server/stats.ts"
import { isPattern, patternProblem } from "../topic/pattern.ts"
import { topicProblem } from "../topic/topic-name.ts"
import type { DashboardFeed } from "./dashboard-feed.ts"
import { DEFAULT_TAIL_MESSAGES, MAX_TAIL_MESSAGES } from "./dashboard-tail.ts"
import { formatMetrics, METRICS_CONTENT_TYPE } from "./metrics.ts"
import { BodyStalledError, discardBody, readBody } from "./request-body.ts"
import { eventStream } from "./sse.ts"
import { connectionsPage, DEFAULT_CONNECTIONS_PAGE, MAX_CONNECTIONS_PAGE, type StatsSources, statsDocument } from "./stats-document.ts"

export interface HttpContext {
  readonly auth: Authenticator
  readonly broker: Broker
  readonly maxMessageBytes: number
  /** The server-wide budget request bodies are read within. */
  readonly budget: BufferBudget
  stats(): ServerStats
  countError(name: ErrorName): void
  /** Aborted when the server stops: event streams end. */
  readonly shutdown: AbortSignal
  /** What /stats reads, and the dashboard's live channel. */
  readonly monitor: StatsSources
  readonly dashboard: DashboardFeed
}

/**
 * The most of an oversized body the server reads (and discards) to answer it with a 413 the
 * client can read: Python's urllib and requests send the whole body before they read, and see a
 * broken pipe instead of the answer when the server closes early. Beyond this, Bun closes.
 */
export const MAX_DISCARDED_BODY_BYTES = 64 * 1024 * 1024

/** Headers that carry a message's metadata next to its raw payload. */
export const SEQ_HEADER = "DSMQ-Seq"
export const TOPIC_HEADER = "DSMQ-Topic"
/** Messages before this one that retention removed unread (sent when there were any). */
export const MISSED_HEADER = "DSMQ-Missed"

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    text: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(text)
  }
}

/**
 * The request's URL. Bun builds it from the Host header, so a Host that is not a valid
 * authority ("a b", "x:99999"), or none (HTTP/1.0), makes it unparsable: the path and query
 * are still good, so they are read against a placeholder host instead.
 */
export function requestUrl(request: Request): URL {
  try {
    return new URL(request.url)
  } catch {
    // Appended, not resolved: a path starting with "//" must not be read as a host.
    const rest = request.url.replace(/^[a-z]+:\/\/[^/?#]*/i, "")
    return new URL(`http://localhost${rest.startsWith("/") ? rest : `/${rest}`}`)
  }
}

export async function handleHttp(request: Request, url: URL, server: Server<unknown>, context: HttpContext): Promise<Response> {
  try {
    const response = await route(request, url, server, context)
    // What the answer tells of (a put's seq, a named cursor's move) is durable before it goes.
    context.broker.store.commit()
    return response
  } catch (error) {
    if (error instanceof HttpError) {
      if (error.code in ERROR_NAMES) context.countError(error.code as ErrorName)
      return json(error.status, { error: { code: error.code, text: error.message } }, error.headers)
    }
    if (error instanceof BrokerError) {
      const name = ERROR_NAME_BY_BROKER_CODE[error.code]
      context.countError(name)
      return json(STATUS_BY_ERROR[error.code], { error: { code: name, text: error.message } })
    }
    throw error
  }
}

const ERROR_NAMES = {
  bad_field: true,
  too_large: true,
  topic_full: true,
  store_full: true,
  cursor_busy: true,
  unauthorized: true,
  forbidden: true,
} as const

/** Statuses for the broker's own refusals; the body's code is the wire name the other protocols use. */
const STATUS_BY_ERROR: Record<BrokerErrorCode, number> = {
  topic_full: 507,
  store_full: 507,
  cursor_busy: 409,
  invalid_argument: 400,
  too_many_cursors: 429,
}

async function route(request: Request, url: URL, server: Server<unknown>, context: HttpContext): Promise<Response> {
  const segments = url.pathname.split("/").slice(1)
  if (url.pathname === "/healthz") {
    // Open to all, for health checks.
    allow(request, "GET, HEAD")
    return json(200, { status: "ok" })
  }
  const principal = authenticate(request, url, context)
  if (url.pathname === "/topics") {
    allow(request, "GET, HEAD")
    return json(200, catalogue(context.broker, principal, url))
  }
  if (url.pathname === "/events") {
    allow(request, "GET")
    const names = url.searchParams.getAll("topic").map((name) => checkedName(name, true))
    if (names.length === 0) throw new HttpError(400, "bad_field", "give at least one ?topic= (a topic or a pattern)")
    return events(request, server, url, names, readAccessAll(principal, names), context)
  }
  if (segments[0] === "topics" && segments.length >= 2 && segments.length <= 3 && segments[1] !== "") {
    const writing = segments[2] === undefined && request.method === "POST"
    const topic = decodeTopic(segments[1]!, !writing)
    if (writing && !principal.canWrite(topic)) {
      throw new HttpError(403, "forbidden", `${principal.name} may not write topic ${JSON.stringify(topic)}`)
    }
    const readable = writing ? undefined : readAccessAll(principal, [topic])
    switch (segments[2]) {
      case undefined:
        if (request.method === "POST") return await put(request, topic, context)
        allow(request, "GET, HEAD, POST")
        return await getAfter(request, server, url, topic, readable, context)
      case "latest": {
        allow(request, "GET, HEAD")
        const reader = context.broker.openReaderAt(0)
        try {
          return messageResponse(reader.getLatest(topic, readable))
        } finally {
          reader.close()
        }
      }
      case "events":
        allow(request, "GET")
        return events(request, server, url, [topic], readable, context)
    }
  }
  if (url.pathname === "/stats") {
    allow(request, "GET, HEAD")
    return json(200, statsDocument(context.monitor))
  }
  if (url.pathname === "/stats/connections") {
    allow(request, "GET, HEAD")
    const offset = readWhole(url.searchParams.get("offset"), "offset", 0, Number.MAX_SAFE_INTEGER) ?? 0
    const limit = readWhole(url.searchParams.get("limit"), "limit", 1, MAX_CONNECTIONS_PAGE) ?? DEFAULT_CONNECTIONS_PAGE
    return json(200, connectionsPage(context.monitor, offset, limit))
  }
  if (url.pathname === "/stats/live") {
    allow(request, "GET")
    return live(request, server, url, principal, context)
  }
  if (url.pathname === "/metrics") {
    allow(request, "GET, HEAD")
    return new Response(formatMetrics(context.stats()), { headers: { "Content-Type": METRICS_CONTENT_TYPE } })
  }
  throw new HttpError(404, "not_found", `no route for ${request.method} ${url.pathname}; see the README for the HTTP API`)
}

/** Who the request acts as: everyone when no tokens are configured, else its bearer token's owner. */
function authenticate(request: Request, url: URL, context: HttpContext): Principal {
  const token = bearerToken(request, url)
  const principal = token === null ? context.auth.initial : context.auth.authenticate(token)
  if (principal === null) {
    const text = token === null ? "a token is required: Authorization: Bearer TOKEN" : "the token is not valid"
    throw new HttpError(401, "unauthorized", text, { "WWW-Authenticate": "Bearer" })
  }
  return principal
}

async function put(request: Request, topic: string, context: HttpContext): Promise<Response> {
  const declared = Number(request.headers.get("content-length") ?? "0")
  if (declared > context.maxMessageBytes) {
    await discardBody(request)
    throw tooLarge(declared, context.maxMessageBytes)
  }
  const budgetSpent = (text: string) => new HttpError(503, "limit_exceeded", text, { "Retry-After": "1" })
  if (!context.budget.admits) {
    await discardBody(request)
    throw budgetSpent(`the clients hold ${context.budget.totalBytes} bytes, past --max-buffered-bytes`)
  }
  const body = await readBody(request, context.maxMessageBytes, context.budget).catch((error: unknown) => {
    throw error instanceof BodyStalledError ? budgetSpent(error.message) : error
  })
  if (body === null) throw tooLarge(null, context.maxMessageBytes)
  const seq = context.broker.put(topic, body)
  return json(201, { topic, seq })
}

async function getAfter(
  request: Request,
  server: Server<unknown>,
  url: URL,
  topic: string,
  readable: TopicFilter | undefined,
  context: HttpContext,
): Promise<Response> {
  const cursor = url.searchParams.get("cursor")
  const after = readSeq(url.searchParams.get("after"), "after")
  if (cursor !== null && after !== undefined) throw new HttpError(400, "bad_field", "give either after or cursor, not both")
  if (cursor !== null && (cursor === "" || Buffer.byteLength(cursor) > MAX_CURSOR_NAME_BYTES)) {
    throw new HttpError(400, "bad_field", `a cursor name must have 1 to ${MAX_CURSOR_NAME_BYTES} bytes`)
  }
  const waitSeconds = readNumber(url.searchParams.get("wait"), "wait", 0, MAX_WAIT_MS / 1000) ?? 0
  const reader = cursor === null ? context.broker.openReaderAt(after ?? 0) : context.broker.openNamedReader(cursor)
  try {
    if (waitSeconds === 0) return messageResponse(reader.get(topic, readable))
    const { promise, resolve } = Promise.withResolvers<Delivery | null>()
    // The answer is sent after the callback returns: its payload is copied (see WaitCallback).
    const keep = (message: Delivery | null): void => resolve(message === null ? null : { ...message, payload: message.payload.slice() })
    const now = reader.getWait(topic, waitSeconds * 1000, keep, readable)
    if (now !== null) return messageResponse(now)
    // A long poll outlives the server's idle timeout; a client that gives up ends the wait.
    server.timeout(request, 0)
    request.signal.addEventListener("abort", () => reader.close(), { once: true })
    return messageResponse(await promise)
  } finally {
    reader.close()
  }
}

function events(
  request: Request,
  server: Server<unknown>,
  url: URL,
  names: readonly string[],
  readable: TopicFilter | undefined,
  context: HttpContext,
): Response {
  const lastEventId = request.headers.get("last-event-id")
  const after = readSeq(lastEventId, "Last-Event-ID") ?? readSeq(url.searchParams.get("after"), "after") ?? context.broker.store.lastSeq
  server.timeout(request, 0)
  return new Response(eventStream(context.broker, names, after, context.shutdown, readable), {
    headers: { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache" },
  })
}

/** The dashboard's live channel, with a tail of ?tail= (a topic or pattern the principal may read) when asked. */
function live(request: Request, server: Server<unknown>, url: URL, principal: Principal, context: HttpContext): Response {
  const tailName = url.searchParams.get("tail")
  const limit = readWhole(url.searchParams.get("tailLimit"), "tailLimit", 1, MAX_TAIL_MESSAGES) ?? DEFAULT_TAIL_MESSAGES
  const tail =
    tailName === null || tailName === ""
      ? null
      : { name: checkedName(tailName, true), limit, readable: readAccessAll(principal, [tailName]) }
  if (context.dashboard.isFull) {
    throw new HttpError(503, "limit_exceeded", `${context.dashboard.viewerCount} dashboards are open, the most the server serves`, {
      "Retry-After": "5",
    })
  }
  server.timeout(request, 0)
  return new Response(context.dashboard.open(principal, tail), {
    headers: { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache" },
  })
}

/** The message's own topic goes in DSMQ-Topic: for a read of a pattern, the matching topic it came from. */
function messageResponse(message: Delivery | null): Response {
  if (message === null) return new Response(null, { status: 204 })
  const headers: Record<string, string> = {
    "Content-Type": "application/octet-stream",
    [SEQ_HEADER]: String(message.seq),
    [TOPIC_HEADER]: encodeURIComponent(message.topic),
  }
  if (message.missed !== null && message.missed > 0) headers[MISSED_HEADER] = String(message.missed)
  return new Response(message.payload, { headers })
}

/** A path segment's topic; `forReading`: it may be a pattern, which must then be a valid one. */
function decodeTopic(segment: string, forReading: boolean): string {
  let topic: string
  try {
    topic = decodeURIComponent(segment)
  } catch {
    throw new HttpError(400, "bad_field", "the topic is not valid percent-encoded UTF-8")
  }
  return checkedName(topic, forReading)
}

function checkedName(name: string, forReading: boolean): string {
  const problem = topicProblem(name) ?? (forReading && isPattern(name) ? patternProblem(name) : null)
  if (problem !== null) throw new HttpError(400, "bad_field", problem)
  return name
}

/**
 * 403 unless every name is readable (a pattern: some topic it matches is); the filter of the
 * topics patterns may deliver, or undefined when every name is an exact topic.
 */
function readAccessAll(principal: Principal, names: readonly string[]): TopicFilter | undefined {
  let readable: TopicFilter | undefined
  for (const name of names) {
    const access = readAccess(principal, name)
    if (!access.allowed) {
      const what = isPattern(name) ? "any topic matching" : "topic"
      throw new HttpError(403, "forbidden", `${principal.name} may not read ${what} ${JSON.stringify(name)}`)
    }
    readable ??= access.readable
  }
  return readable
}

/** Catalogue pages: the default and the largest `limit`. */
const CATALOGUE_PAGE = 1000
const MAX_CATALOGUE_PAGE = 10_000

/** GET /topics: the readable topics (matching ?match=), by name, a page at a time. */
function catalogue(broker: Broker, principal: Principal, url: URL): object {
  const match = url.searchParams.get("match")
  if (match !== null) checkedName(match, true)
  const limit = readWhole(url.searchParams.get("limit"), "limit", 1, MAX_CATALOGUE_PAGE) ?? CATALOGUE_PAGE
  const after = url.searchParams.get("after") ?? ""
  const { topics, next } = listTopics(broker, { match, limit, after, readable: (topic) => principal.canRead(topic) })
  return next === null ? { topics } : { topics, next }
}

function readSeq(text: string | null, name: string): number | undefined {
  if (text === null || text === "") return undefined
  if (!/^\d{1,16}$/.test(text))
    throw new HttpError(400, "bad_field", `${name} must be a sequence number (a whole number), got ${JSON.stringify(text.slice(0, 40))}`)
  return Number(text)
}

function readNumber(text: string | null, name: string, min: number, max: number): number | undefined {
  if (text === null || text === "") return undefined
  const value = Number(text)
  if (!(value >= min && value <= max)) throw new HttpError(400, "bad_field", `${name} must be a number from ${min} to ${max}`)
  return value
}

function readWhole(text: string | null, name: string, min: number, max: number): number | undefined {
  const value = readNumber(text, name, min, max)
  if (value !== undefined && !Number.isInteger(value)) throw new HttpError(400, "bad_field", `${name} must be a whole number`)
  return value
}

function allow(request: Request, methods: string): void {
  if (!methods.split(", ").includes(request.method)) {
    throw new HttpError(405, "method_not_allowed", `${request.method} is not allowed here; use ${methods}`, { Allow: methods })
  }
}

/** `bytes` null: a body without a length, found too large while it was read. */
function tooLarge(bytes: number | null, max: number): HttpError {
  const size = bytes === null ? `more than ${max} bytes` : `${bytes} bytes`
  return new HttpError(413, "too_large", `body of ${size} is larger than the maximum of ${max} bytes`)
}

/** The body, or null once it passes `max` bytes (the rest is read and discarded). Chunked bodies have no length to check first. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...headers },
  })
}
