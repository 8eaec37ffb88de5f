/**
 * The topic catalogue: which topics exist, with their counts, sorted by name and paged (the
 * page after a name, exclusive), optionally only those a pattern matches and a client may read.
 */
import { compilePattern } from "../topic/pattern.ts"
import type { Broker, TopicFilter } from "./broker.ts"

export interface TopicEntry {
  readonly topic: string
  /** Messages stored now, and their payload bytes. */
  readonly messages: number
  readonly bytes: number
  /** The oldest and newest stored message's sequence numbers; null when none is stored. */
  readonly firstSeq: number | null
  readonly lastSeq: number | null
  /** When the newest stored message was put (ISO 8601, UTC); null when none is stored. */
  readonly lastPutAt: string | null
  /** Subscriptions that receive this topic's puts, exact and by pattern. */
  readonly subscribers: number
}

export interface TopicPage {
  readonly topics: readonly TopicEntry[]
  /** The name to pass as `after` for the next page; null on the last page. */
  readonly next: string | null
}

export interface TopicQuery {
  readonly match: string | null
  readonly limit: number
  /** Names up to and including this one are skipped ("" for the first page). */
  readonly after: string
  readonly readable?: TopicFilter
}

export function listTopics(broker: Broker, query: TopicQuery): TopicPage {
  const matches = query.match === null ? null : compilePattern(query.match)
  const names: string[] = []
  for (const topic of broker.store.topics()) {
    const name = topic.name
    if (name > query.after && (matches === null || matches(name)) && (query.readable === undefined || query.readable(name)))
      names.push(name)
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const page = names.slice(0, query.limit)
  return {
    topics: page.map((name) => entryOf(broker, name)),
    next: names.length > query.limit ? page[page.length - 1]! : null,
  }
}

function entryOf(broker: Broker, name: string): TopicEntry {
  const state = broker.store.topic(name)!
  const oldest = state.count === 0 ? null : (broker.store.oldestOf(state, 1)[0] ?? null)
  const newest = state.count === 0 ? null : broker.store.newestAfter(name, 0)
  return {
    topic: name,
    messages: state.count,
    bytes: state.bytes,
    firstSeq: oldest?.seq ?? null,
    lastSeq: newest?.seq ?? null,
    lastPutAt: newest === null ? null : new Date(newest.putAt).toISOString(),
    subscribers: broker.subscribersOf(name),
  }
}
