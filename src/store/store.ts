/**
 * Message storage on bun:sqlite. Every statement is prepared once in the constructor: SQL text
 * built per request would be parsed again each time (and leaks on in-memory databases).
 *
 * Messages are keyed by one global, strictly increasing sequence number (`seq`), assigned here,
 * so "what a reader has not seen yet" is an exact integer comparison. Each message also has
 * an `ordinal`, its position in its topic (1, 2, 3, ...), which lets a reader count the
 * messages retention removed before it read them. The (topic_id, seq) index makes the
 * oldest/newest-after-a-cursor look-ups one index seek, whatever the number of topics or
 * stored messages.
 *
 * Messages are only ever removed from the old end of a topic (`dropOldest`), so what a topic
 * has lost is always a prefix: `droppedThroughSeq` / `droppedOrdinal` describe it exactly.
 *
 * A topic left with no messages and no named cursors is reclaimed (`reclaim`): its row and
 * its state go, and a later put starts it anew. `reclaimedThroughSeq` remembers how far such
 * topics reached, so a reader that was away can be told it may have missed a whole earlier
 * life of a topic. What topics and named cursors cost counts toward `overheadBytes`.
 */
import { Database, type Statement } from "bun:sqlite"

export interface StoredMessage {
  readonly seq: number
  /** Position in its topic: 1 for the topic's first message ever. */
  readonly ordinal: number
  readonly payload: Uint8Array
  /** When it was put: milliseconds since the epoch, with sub-millisecond precision. */
  readonly putAt: number
}

/** What the store knows of one topic, kept in memory for the put path and retention. */
export interface TopicState {
  readonly id: number
  readonly name: string
  /** Ordinal of the newest message ever put. */
  lastOrdinal: number
  /** Sequence number of the newest message ever put (0: none): a reader past it has nothing unread here. */
  lastSeq: number
  /** When the newest message was put (ms since the epoch; 0: never, or none stored when loaded from a file). */
  lastPutAt: number
  /** Messages and payload bytes stored now. */
  count: number
  bytes: number
  /** The newest message removed by retention (0 when none), and its ordinal. */
  droppedThroughSeq: number
  droppedOrdinal: number
  /**
   * The store's last sequence number when this topic was created (for a topic loaded from a
   * file, a conservative guess: just before its oldest message kept). Nothing of this topic's
   * current life is older.
   */
  createdAfterSeq: number
}

/**
 * What a topic, a named reader and a named cursor cost beyond their names, in SQLite and in the
 * maps that mirror it (estimates, like STORED_MESSAGE_OVERHEAD), counted against the store's cap.
 */
export const TOPIC_OVERHEAD_BYTES = 200
export const NAMED_READER_OVERHEAD_BYTES = 100
export const NAMED_CURSOR_OVERHEAD_BYTES = 60

/** A message as retention sees it: enough to decide whether to drop it and to count it. */
export interface DroppedMessage {
  readonly seq: number
  readonly ordinal: number
  readonly bytes: number
  readonly putAt: number
}

/**
 * Rows per INSERT when a batch is stored: bun:sqlite's cost per statement run is about 0.3 µs of
 * the 0.8 µs a single-row insert of a small message takes; 16 rows a statement cost 0.49 µs a
 * message, 50 rows 0.45 µs (2026-12-07, in memory, 64-byte payloads), so 16 keeps most of the gain
 * with few parameters (80; SQLite allows 32,766).
 */
const INSERT_ROWS = 16

const TIME_ORIGIN = performance.timeOrigin

/** Wall-clock milliseconds with the precision of performance.now(). */
export function preciseNow(): number {
  return TIME_ORIGIN + performance.now()
}

/** Durability of a file store: `normal` survives a crash of the process, `full` also power loss. */
export type SyncLevel = "normal" | "full"

export interface StoreOptions {
  /** A file for durable storage; in memory when omitted (as upstream). */
  readonly path?: string
  readonly sync?: SyncLevel
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS topics (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    dropped_through_seq INTEGER NOT NULL DEFAULT 0,
    dropped_ordinal     INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE IF NOT EXISTS messages (
    seq      INTEGER PRIMARY KEY,
    topic_id INTEGER NOT NULL REFERENCES topics (id),
    ordinal  INTEGER NOT NULL,
    put_at   REAL NOT NULL,
    payload  BLOB NOT NULL
  );
  CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic_id, seq);
  -- The highest sequence number ever assigned, so none is reused after the newest messages
  -- were removed and the server restarted.
  CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  );
  -- Named cursors: where a named reader started, and how far it has read in each topic.
  CREATE TABLE IF NOT EXISTS named_readers (
    name      TEXT PRIMARY KEY,
    start_seq INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS named_cursors (
    reader   TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    ordinal  INTEGER NOT NULL,
    PRIMARY KEY (reader, topic_id)
  ) WITHOUT ROWID;
  -- Whether any named cursor keeps an emptied topic from being reclaimed: one seek.
  CREATE INDEX IF NOT EXISTS named_cursors_by_topic ON named_cursors (topic_id);
`

const SELECT_MESSAGE = "SELECT seq, ordinal, payload, put_at AS putAt FROM messages"

export interface MessagePreview {
  readonly preview: Uint8Array
  readonly bytes: number
  readonly putAt: number
}

export interface NamedCursor {
  readonly topic: string
  readonly seq: number
  readonly ordinal: number
}

export class Store {
  readonly path: string
  readonly #db: Database
  readonly #topics = new Map<string, TopicState>()
  readonly #topicsById = new Map<number, TopicState>()
  #lastSeq: number
  #messageCount = 0
  #bytes = 0
  #reclaimedThroughSeq: number
  #open = true
  /** What topics, named readers and named cursors cost (see TOPIC_OVERHEAD_BYTES). */
  #overheadBytes = 0
  /** Changes whenever a topic is created or reclaimed, for caches of topic lists. */
  #topicGeneration = 0
  readonly #insertTopic: Statement<{ id: number }, [string]>
  readonly #insertMessage: Statement<unknown, [number, number, number, number, Uint8Array]>
  /** INSERT_ROWS messages in one statement, for batches; its parameters are filled into #rowParameters. */
  readonly #insertMessages: Statement<unknown, (number | Uint8Array)[]>
  readonly #rowParameters: (number | Uint8Array)[] = new Array(INSERT_ROWS * 5)
  readonly #insertMany: (entries: readonly { topic: string; payload: Uint8Array }[], putAt: number) => void
  readonly #oldestAfter: Statement<StoredMessage, [number, number]>
  readonly #messagesAfter: Statement<StoredMessage, [number, number, number]>
  readonly #payloadSizesAfter: Statement<{ bytes: number }, [number, number, number]>
  readonly #ordinalAfter: Statement<{ ordinal: number }, [number, number]>
  readonly #newestAfter: Statement<StoredMessage, [number, number]>
  readonly #oldestBytesAfter: Statement<{ bytes: number }, [number, number]>
  readonly #newestBytesAfter: Statement<{ bytes: number }, [number, number]>
  readonly #oldestOfTopic: Statement<DroppedMessage, [number, number]>
  readonly #oldestPutAt: Statement<{ putAt: number }, [number]>
  readonly #preview: Statement<MessagePreview, [number, number]>
  readonly #readMark: Statement<{ value: number }, [string]>
  readonly #writeMark: Statement<unknown, [string, number]>
  readonly #oldestOverall: Statement<DroppedMessage & { topicId: number }, [number, number]>
  readonly #deleteThrough: Statement<unknown, [number, number]>
  readonly #recordDropped: Statement<unknown, [number, number, number]>
  readonly #recordLastSeq: Statement<unknown, [number]>
  readonly #dropTransaction: (topic: TopicState, dropped: readonly DroppedMessage[]) => void
  readonly #readerStart: Statement<{ start_seq: number }, [string]>
  readonly #insertReader: Statement<unknown, [string, number]>
  readonly #readerCursors: Statement<{ topic_id: number; seq: number; ordinal: number }, [string]>
  readonly #saveCursor: Statement<unknown, [string, number, number, number]>
  readonly #topicHasNamedCursor: Statement<{ found: number }, [number]>
  readonly #deleteTopic: Statement<unknown, [number]>
  readonly #recordReclaimed: Statement<unknown, [number]>
  readonly #reclaimTransaction: (topic: TopicState) => void
  readonly #statements: Statement[]
  readonly #begin: Statement
  readonly #commit: Statement
  /**
   * Group commit: the first write after a commit opens a transaction, and every write until
   * the next commit joins it. In a file store, `commit()` closes it before any reply that tells
   * of those writes leaves the server (the sessions and the HTTP API call it); a commit at the
   * end of the event-loop turn closes it in any case, and is the only one in a memory store.
   */
  #grouping = false
  /**
   * A memory store has nothing to make durable, and every reader uses this one connection,
   * which sees its own open transaction: a reply need not wait for a commit. Committing once a
   * turn instead of before every connection's replies halves what an acknowledged put costs
   * here (bench/store.bench.ts, "put, commit").
   */
  readonly #durable: boolean
  #commitScheduled = false

  constructor(options: StoreOptions = {}) {
    this.path = options.path ?? ":memory:"
    this.#durable = this.path !== ":memory:"
    this.#db = new Database(this.path, { strict: true, create: true })
    if (this.#durable) {
      // WAL: readers never block the writer, and a commit is one append to the log.
      this.#db.run("PRAGMA journal_mode = WAL")
      this.#db.run(`PRAGMA synchronous = ${options.sync === "full" ? "FULL" : "NORMAL"}`)
    }
    this.#db.run(SCHEMA)
    this.#begin = this.#db.prepare("BEGIN")
    this.#commit = this.#db.prepare("COMMIT")

    const db = this.#db
    for (const row of db
      .query<{ id: number; name: string; dropped_through_seq: number; dropped_ordinal: number }, []>(
        "SELECT id, name, dropped_through_seq, dropped_ordinal FROM topics",
      )
      .all()) {
      this.#addTopic({
        id: row.id,
        name: row.name,
        lastOrdinal: row.dropped_ordinal,
        lastSeq: row.dropped_through_seq,
        lastPutAt: 0,
        count: 0,
        bytes: 0,
        droppedThroughSeq: row.dropped_through_seq,
        droppedOrdinal: row.dropped_ordinal,
        createdAfterSeq: row.dropped_through_seq,
      })
    }
    for (const row of db
      .query<
        { topic_id: number; count: number; bytes: number; last: number; last_seq: number; first_seq: number; last_put_at: number },
        []
      >(
        "SELECT topic_id, count(*) AS count, sum(length(payload)) AS bytes, max(ordinal) AS last, max(seq) AS last_seq, min(seq) AS first_seq, max(put_at) AS last_put_at FROM messages GROUP BY topic_id",
      )
      .all()) {
      const topic = this.#topicsById.get(row.topic_id)!
      topic.createdAfterSeq = row.first_seq - 1
      topic.count = row.count
      topic.bytes = row.bytes
      topic.lastOrdinal = Math.max(topic.lastOrdinal, row.last)
      topic.lastSeq = Math.max(topic.lastSeq, row.last_seq)
      topic.lastPutAt = row.last_put_at
      this.#messageCount += row.count
      this.#bytes += row.bytes
    }
    const maxSeq = db.query<{ last: number | null }, []>("SELECT max(seq) AS last FROM messages").get()?.last ?? 0
    const recorded = db.query<{ value: number }, []>("SELECT value FROM meta WHERE key = 'last_seq'").get()?.value ?? 0
    this.#lastSeq = Math.max(maxSeq, recorded)
    this.#reclaimedThroughSeq =
      db.query<{ value: number }, []>("SELECT value FROM meta WHERE key = 'reclaimed_through_seq'").get()?.value ?? 0
    for (const row of db.query<{ name: string }, []>("SELECT name FROM named_readers").all()) {
      this.#overheadBytes += NAMED_READER_OVERHEAD_BYTES + byteLength(row.name)
    }
    const cursorRows = db.query<{ rows: number }, []>("SELECT count(*) AS rows FROM named_cursors").get()?.rows ?? 0
    this.#overheadBytes += cursorRows * NAMED_CURSOR_OVERHEAD_BYTES

    this.#insertTopic = db.prepare("INSERT INTO topics (name) VALUES (?) RETURNING id")
    this.#insertMessage = db.prepare("INSERT INTO messages (seq, topic_id, ordinal, put_at, payload) VALUES (?, ?, ?, ?, ?)")
    this.#insertMessages = db.prepare(
      `INSERT INTO messages (seq, topic_id, ordinal, put_at, payload) VALUES ${Array(INSERT_ROWS).fill("(?, ?, ?, ?, ?)").join(", ")}`,
    )
    this.#insertMany = db.transaction((entries: readonly { topic: string; payload: Uint8Array }[], putAt: number) => {
      let seq = this.#lastSeq
      const rows = this.#rowParameters
      let filled = 0
      for (const entry of entries) {
        const topic = this.#topicFor(entry.topic)
        const base = filled * 5
        rows[base] = ++seq
        rows[base + 1] = topic.id
        rows[base + 2] = ++topic.lastOrdinal
        rows[base + 3] = putAt
        rows[base + 4] = entry.payload
        topic.lastSeq = seq
        topic.lastPutAt = putAt
        // A whole group goes in one statement; the rest, fewer than INSERT_ROWS, one by one below.
        if (++filled === INSERT_ROWS) {
          this.#insertMessages.run(...rows)
          filled = 0
        }
      }
      for (let base = 0; base < filled * 5; base += 5) {
        this.#insertMessage.run(
          rows[base] as number,
          rows[base + 1] as number,
          rows[base + 2] as number,
          rows[base + 3] as number,
          rows[base + 4] as Uint8Array,
        )
      }
      // The parameters keep no payload alive past the batch.
      rows.fill(0)
    })
    // `+?` rather than `?`: Bun's SQLite re-prepares a statement whenever a value is bound to a
    // bare parameter compared with an index's first column (so the planner can look at it),
    // which made every get cost ~5 µs. The expression keeps the same index seek, prepared once.
    this.#oldestAfter = db.prepare(`${SELECT_MESSAGE} WHERE topic_id = +? AND seq > ? ORDER BY seq ASC LIMIT 1`)
    this.#messagesAfter = db.prepare(`${SELECT_MESSAGE} WHERE topic_id = +? AND seq > ? ORDER BY seq ASC LIMIT ?`)
    this.#payloadSizesAfter = db.prepare(
      "SELECT length(payload) AS bytes FROM messages WHERE topic_id = +? AND seq > ? ORDER BY seq ASC LIMIT ?",
    )
    this.#ordinalAfter = db.prepare("SELECT ordinal FROM messages WHERE topic_id = +? AND seq > ? ORDER BY seq ASC LIMIT 1")
    this.#newestAfter = db.prepare(`${SELECT_MESSAGE} WHERE topic_id = +? AND seq > ? ORDER BY seq DESC LIMIT 1`)
    // length() of a BLOB reads its size from the record, not the payload's pages.
    this.#oldestBytesAfter = db.prepare(
      "SELECT length(payload) AS bytes FROM messages WHERE topic_id = +? AND seq > ? ORDER BY seq ASC LIMIT 1",
    )
    this.#newestBytesAfter = db.prepare(
      "SELECT length(payload) AS bytes FROM messages WHERE topic_id = +? AND seq > ? ORDER BY seq DESC LIMIT 1",
    )
    this.#oldestOfTopic = db.prepare(
      "SELECT seq, ordinal, length(payload) AS bytes, put_at AS putAt FROM messages WHERE topic_id = +? ORDER BY seq ASC LIMIT ?",
    )
    this.#oldestPutAt = db.prepare("SELECT put_at AS putAt FROM messages WHERE topic_id = +? ORDER BY seq ASC LIMIT 1")
    // substr of a BLOB counts bytes: only the preview leaves SQLite, however large the payload.
    this.#preview = db.prepare(
      "SELECT substr(payload, 1, ?) AS preview, length(payload) AS bytes, put_at AS putAt FROM messages WHERE seq = +?",
    )
    this.#oldestOverall = db.prepare(
      "SELECT seq, topic_id AS topicId, ordinal, length(payload) AS bytes, put_at AS putAt FROM messages WHERE seq > ? ORDER BY seq ASC LIMIT ?",
    )
    this.#deleteThrough = db.prepare("DELETE FROM messages WHERE topic_id = +? AND seq <= ?")
    this.#recordDropped = db.prepare("UPDATE topics SET dropped_through_seq = ?, dropped_ordinal = ? WHERE id = ?")
    this.#recordLastSeq = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)")
    this.#dropTransaction = db.transaction((topic: TopicState, dropped: readonly DroppedMessage[]) => {
      const last = dropped[dropped.length - 1]!
      this.#deleteThrough.run(topic.id, last.seq)
      this.#recordDropped.run(last.seq, last.ordinal, topic.id)
      this.#recordLastSeq.run(this.#lastSeq)
    })
    this.#readerStart = db.prepare("SELECT start_seq FROM named_readers WHERE name = ?")
    this.#insertReader = db.prepare("INSERT INTO named_readers (name, start_seq) VALUES (?, ?)")
    this.#readerCursors = db.prepare("SELECT topic_id, seq, ordinal FROM named_cursors WHERE reader = ?")
    this.#saveCursor = db.prepare("INSERT OR REPLACE INTO named_cursors (reader, topic_id, seq, ordinal) VALUES (?, ?, ?, ?)")
    this.#topicHasNamedCursor = db.prepare("SELECT 1 AS found FROM named_cursors WHERE topic_id = +? LIMIT 1")
    this.#deleteTopic = db.prepare("DELETE FROM topics WHERE id = ?")
    this.#recordReclaimed = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('reclaimed_through_seq', ?)")
    this.#reclaimTransaction = db.transaction((topic: TopicState) => {
      this.#deleteTopic.run(topic.id)
      this.#recordReclaimed.run(Math.max(this.#reclaimedThroughSeq, topic.lastSeq))
    })
    this.#readMark = db.prepare("SELECT value FROM meta WHERE key = ?")
    this.#writeMark = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
    this.#statements = [
      this.#insertTopic,
      this.#insertMessage,
      this.#insertMessages,
      this.#oldestAfter,
      this.#messagesAfter,
      this.#payloadSizesAfter,
      this.#ordinalAfter,
      this.#newestAfter,
      this.#oldestBytesAfter,
      this.#newestBytesAfter,
      this.#oldestOfTopic,
      this.#oldestPutAt,
      this.#preview,
      this.#readMark,
      this.#writeMark,
      this.#oldestOverall,
      this.#deleteThrough,
      this.#recordDropped,
      this.#recordLastSeq,
      this.#readerStart,
      this.#insertReader,
      this.#readerCursors,
      this.#saveCursor,
      this.#topicHasNamedCursor,
      this.#deleteTopic,
      this.#recordReclaimed,
    ]
  }

  /** The sequence number of the newest message ever stored (0 when none). */
  get lastSeq(): number {
    return this.#lastSeq
  }

  /** Stores a message and returns its sequence number. The payload is copied into SQLite. */
  put(topic: string, payload: Uint8Array, putAt = preciseNow()): number {
    this.#write()
    const state = this.#topicFor(topic)
    const seq = this.#lastSeq + 1
    this.#insertMessage.run(seq, state.id, state.lastOrdinal + 1, putAt, payload)
    state.lastOrdinal++
    state.lastSeq = seq
    state.lastPutAt = putAt
    state.count++
    state.bytes += payload.length
    this.#lastSeq = seq
    this.#messageCount++
    this.#bytes += payload.length
    return seq
  }

  /**
   * Stores messages in one transaction, all or none, with consecutive sequence numbers.
   * Returns the first one's.
   */
  putMany(entries: readonly { topic: string; payload: Uint8Array }[], putAt = preciseNow()): number {
    // Inside the group's transaction, the batch is a savepoint: all of it, or none.
    this.#write()
    const first = this.#lastSeq + 1
    const knownTopics = this.#topics.size
    const before = new Map<TopicState, { ordinal: number; seq: number; putAt: number }>()
    for (const entry of entries) {
      const topic = this.#topics.get(entry.topic)
      if (topic !== undefined && !before.has(topic)) {
        before.set(topic, { ordinal: topic.lastOrdinal, seq: topic.lastSeq, putAt: topic.lastPutAt })
      }
    }
    try {
      this.#insertMany(entries, putAt)
    } catch (error) {
      // Rolled back: restore ordinals and forget topics made inside the transaction.
      for (const [topic, { ordinal, seq, putAt }] of before) {
        topic.lastOrdinal = ordinal
        topic.lastSeq = seq
        topic.lastPutAt = putAt
      }
      for (const name of [...this.#topics.keys()].slice(knownTopics)) this.#forgetTopic(this.#topics.get(name)!)
      throw error
    }
    for (const entry of entries) {
      const topic = this.#topics.get(entry.topic)!
      topic.count++
      topic.bytes += entry.payload.length
      this.#bytes += entry.payload.length
    }
    this.#lastSeq += entries.length
    this.#messageCount += entries.length
    return first
  }

  /**
   * The oldest message of `topic` with a sequence number above `afterSeq`. A reader that is
   * caught up (the usual GET and GET_WAIT at steady rates) costs no statement: no stored
   * message is newer than the topic's lastSeq.
   */
  oldestAfter(topic: string, afterSeq: number): StoredMessage | null {
    const state = this.#topics.get(topic)
    return state === undefined || state.lastSeq <= afterSeq ? null : this.#oldestAfter.get(state.id, afterSeq)
  }

  /** Up to `limit` messages of `topic` after `afterSeq`, oldest first: one statement for a batch. */
  messagesAfter(topic: string, afterSeq: number, limit: number): StoredMessage[] {
    const state = this.#topics.get(topic)
    return state === undefined || state.lastSeq <= afterSeq ? [] : this.#messagesAfter.all(state.id, afterSeq, limit)
  }

  /**
   * How many of `topic`'s messages after `afterSeq`, at most `limit`, a batch of up to `maxBytes`
   * of payload takes: the one that reaches `maxBytes` included, and at least one. Found from the
   * sizes alone (no payload read), and only for a topic whose messages are large enough on
   * average for `limit` of them to pass `maxBytes`; otherwise `limit`. Without it, a catch-up of
   * 960 KiB messages read 64 of them (60 MiB, 5-12 ms) to send one or two.
   */
  messagesWithin(topic: string, afterSeq: number, limit: number, maxBytes: number): number {
    const state = this.#topics.get(topic)
    if (state === undefined || state.count === 0 || (state.bytes / state.count) * limit <= maxBytes) return limit
    let count = 0
    let bytes = 0
    for (const row of this.#payloadSizesAfter.iterate(state.id, afterSeq, limit)) {
      count++
      bytes += row.bytes
      if (bytes >= maxBytes) break
    }
    return Math.max(1, count)
  }

  /** The ordinal of `topic`'s oldest stored message after `afterSeq` (no payload read); null when none. */
  ordinalAfter(topic: TopicState, afterSeq: number): number | null {
    return this.#ordinalAfter.get(topic.id, afterSeq)?.ordinal ?? null
  }

  /** The newest message of `topic` with a sequence number above `afterSeq`. */
  newestAfter(topic: string, afterSeq: number): StoredMessage | null {
    const state = this.#topics.get(topic)
    return state === undefined || state.lastSeq <= afterSeq ? null : this.#newestAfter.get(state.id, afterSeq)
  }

  /** The payload size of what oldestAfter (or, `newest`, newestAfter) would return, without reading the payload; 0 when none. */
  payloadBytesAfter(topic: string, afterSeq: number, newest: boolean): number {
    const state = this.#topics.get(topic)
    if (state === undefined || state.lastSeq <= afterSeq) return 0
    return (newest ? this.#newestBytesAfter : this.#oldestBytesAfter).get(state.id, afterSeq)?.bytes ?? 0
  }

  topic(name: string): TopicState | undefined {
    return this.#topics.get(name)
  }

  topicById(id: number): TopicState | undefined {
    return this.#topicsById.get(id)
  }

  topics(): IterableIterator<TopicState> {
    return this.#topics.values()
  }

  /** The oldest `limit` messages of a topic, for retention to decide what to drop. */
  oldestOf(topic: TopicState, limit: number): DroppedMessage[] {
    return this.#oldestOfTopic.all(topic.id, limit)
  }

  /** When the oldest message of a topic was put (ms since the epoch), or null when it has none. */
  oldestPutAt(topic: TopicState): number | null {
    return this.#oldestPutAt.get(topic.id)?.putAt ?? null
  }

  /**
   * A sequence number kept under a name, for good (with a file, across restarts): how far a
   * bridge rule has sent (src/bridge/). Names start with "bridge:" so none meets the store's own.
   */
  mark(name: string): number | null {
    return this.#readMark.get(name)?.value ?? null
  }

  setMark(name: string, seq: number): void {
    this.#write()
    this.#writeMark.run(name, seq)
  }

  /** The first `maxBytes` of message `seq`'s payload, with its size and put time; null when it is not stored (any more). */
  preview(seq: number, maxBytes: number): MessagePreview | null {
    return this.#preview.get(maxBytes, seq)
  }

  /** The oldest messages of the whole store after `afterSeq`, with their topics. */
  oldestOverall(afterSeq: number, limit: number): (DroppedMessage & { topicId: number })[] {
    return this.#oldestOverall.all(afterSeq, limit)
  }

  /** Removes the given oldest messages of a topic (a prefix of it), in one transaction. */
  dropOldest(topic: TopicState, dropped: readonly DroppedMessage[]): void {
    if (dropped.length === 0) return
    this.#write()
    this.#dropTransaction(topic, dropped)
    const last = dropped[dropped.length - 1]!
    let bytes = 0
    for (const message of dropped) bytes += message.bytes
    topic.count -= dropped.length
    topic.bytes -= bytes
    topic.droppedThroughSeq = last.seq
    topic.droppedOrdinal = last.ordinal
    this.#messageCount -= dropped.length
    this.#bytes -= bytes
  }

  /** Where a named reader started, or null when there is none of that name. */
  namedReaderStart(name: string): number | null {
    return this.#readerStart.get(name)?.start_seq ?? null
  }

  /** Records a new named reader, starting now; returns its start. */
  createNamedReader(name: string): number {
    this.#write()
    this.#insertReader.run(name, this.#lastSeq)
    this.#overheadBytes += NAMED_READER_OVERHEAD_BYTES + byteLength(name)
    return this.#lastSeq
  }

  namedCursors(name: string): NamedCursor[] {
    return this.#readerCursors.all(name).flatMap((row) => {
      const topic = this.#topicsById.get(row.topic_id)
      return topic === undefined ? [] : [{ topic: topic.name, seq: row.seq, ordinal: row.ordinal }]
    })
  }

  /** Saves a named reader's place in an existing topic; `isNew`: the reader had no row for it. */
  saveNamedCursor(name: string, topic: string, seq: number, ordinal: number, isNew: boolean): void {
    const state = this.#topics.get(topic)
    // Readers keep no place in topics that do not exist, so this does not happen; if it did, a read must not create a topic.
    if (state === undefined) return
    this.#write()
    this.#saveCursor.run(name, state.id, seq, ordinal)
    if (isNew) this.#overheadBytes += NAMED_CURSOR_OVERHEAD_BYTES
  }

  /** Whether some named cursor keeps a place in `topic` (so it is not reclaimed while empty). */
  hasNamedCursor(topic: TopicState): boolean {
    return this.#topicHasNamedCursor.get(topic.id) !== null
  }

  /** Removes a topic that holds no messages, in memory and in the database; a later put starts it anew. */
  reclaim(topic: TopicState): void {
    if (topic.count !== 0 || this.#topics.get(topic.name) !== topic) throw new Error(`topic ${topic.name} cannot be reclaimed`)
    this.#write()
    this.#reclaimTransaction(topic)
    this.#reclaimedThroughSeq = Math.max(this.#reclaimedThroughSeq, topic.lastSeq)
    this.#forgetTopic(topic)
  }

  /** The newest message any reclaimed topic had (0 when none was reclaimed). */
  get reclaimedThroughSeq(): number {
    return this.#reclaimedThroughSeq
  }

  /** Changes whenever a topic is created or reclaimed. */
  get topicGeneration(): number {
    return this.#topicGeneration
  }

  /** What topics, named readers and named cursors take, beyond the messages. */
  get overheadBytes(): number {
    return this.#overheadBytes
  }

  get messageCount(): number {
    return this.#messageCount
  }

  /** Payload bytes of all stored messages. */
  get payloadBytes(): number {
    return this.#bytes
  }

  get topicCount(): number {
    return this.#topics.size
  }

  /** False once closed: nothing may be asked of it then. */
  get isOpen(): boolean {
    return this.#open
  }

  /**
   * Makes the writes so far durable (as --sync says) before a reply tells of them: one
   * transaction for all of them, however many puts, cursor saves and drops from however many
   * clients. Cheap when nothing is open; nothing to do in a memory store (see #durable).
   */
  commit(): void {
    if (this.#durable) this.#commitGroup()
  }

  #commitGroup(): void {
    if (!this.#grouping) return
    this.#grouping = false
    try {
      this.#commit.run()
    } catch (error) {
      // A failed commit (disk full, I/O error) takes the group with it; nothing of it was acknowledged.
      if (this.#db.inTransaction) this.#db.run("ROLLBACK")
      throw error
    }
  }

  /** A group of writes is open (not committed yet). */
  get hasUncommittedWrites(): boolean {
    return this.#grouping
  }

  /** Every write goes through here first: it joins the open group, or opens one. */
  #write(): void {
    if (this.#grouping) return
    this.#begin.run()
    this.#grouping = true
    if (this.#commitScheduled) return
    this.#commitScheduled = true
    // The backstop: writes nobody replies to (puts without acknowledgement) are committed
    // at the end of this turn of the event loop.
    setImmediate(() => {
      this.#commitScheduled = false
      if (this.#open) this.#commitGroup()
    })
  }

  close(): void {
    if (!this.#open) return
    this.#commitGroup()
    this.#open = false
    for (const statement of [...this.#statements, this.#begin, this.#commit]) statement.finalize()
    if (this.#durable) this.#db.run("PRAGMA wal_checkpoint(TRUNCATE)")
    this.#db.close()
  }

  #topicFor(name: string): TopicState {
    let topic = this.#topics.get(name)
    if (topic === undefined) {
      const id = this.#insertTopic.get(name)!.id
      topic = {
        id,
        name,
        lastOrdinal: 0,
        lastSeq: 0,
        lastPutAt: 0,
        count: 0,
        bytes: 0,
        droppedThroughSeq: 0,
        droppedOrdinal: 0,
        createdAfterSeq: this.#lastSeq,
      }
      this.#addTopic(topic)
    }
    return topic
  }

  #addTopic(topic: TopicState): void {
    this.#topics.set(topic.name, topic)
    this.#topicsById.set(topic.id, topic)
    this.#overheadBytes += topicOverheadBytes(topic.name)
    this.#topicGeneration++
  }

  #forgetTopic(topic: TopicState): void {
    this.#topics.delete(topic.name)
    this.#topicsById.delete(topic.id)
    this.#overheadBytes -= topicOverheadBytes(topic.name)
    this.#topicGeneration++
  }
}

const byteLength = (text: string): number => Buffer.byteLength(text, "utf8")
/** What a topic of this name costs the store, beyond its messages. */
export const topicOverheadBytes = (name: string): number => TOPIC_OVERHEAD_BYTES + byteLength(name)
