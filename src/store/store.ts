/**
 * Message storage on bun:sqlite. Every statement is prepared once in the constructor: SQL text
 * built per request would be parsed again each time (and leaks on in-memory databases).
 *
 * Messages are keyed by one global, strictly increasing sequence number (`seq`), assigned here,
 * so "what a reader has not seen yet" is an exact integer comparison. The (topic_id, seq) index
 * makes the oldest/newest-after-a-cursor look-ups a single index seek, whatever the number of
 * topics or stored messages.
 */
import { Database, type Statement } from "bun:sqlite"

export interface StoredMessage {
  readonly seq: number
  readonly payload: Uint8Array
  /** When it was put: milliseconds since the epoch, with sub-millisecond precision. */
  readonly putAt: number
}

/** Wall-clock milliseconds with the precision of performance.now(). */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now()
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS topics (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
  );
  CREATE TABLE IF NOT EXISTS messages (
    seq       INTEGER PRIMARY KEY,
    topic_id  INTEGER NOT NULL REFERENCES topics (id),
    put_at    REAL NOT NULL,
    payload   BLOB NOT NULL
  );
  CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic_id, seq);
`

export class Store {
  readonly #db: Database
  readonly #topicIds = new Map<string, number>()
  #lastSeq: number
  readonly #insertTopic: Statement<{ id: number }, [string]>
  readonly #insertMessage: Statement<unknown, [number, number, number, Uint8Array]>
  #bytes: number
  readonly #oldestAfter: Statement<StoredMessage, [number, number]>
  readonly #newestAfter: Statement<StoredMessage, [number, number]>
  readonly #insertMany: (entries: readonly { topic: string; payload: Uint8Array }[], putAt: number) => void
  /** Kept in memory: count(*) scans the whole table. */
  #messageCount: number

  constructor(path = ":memory:") {
    this.#db = new Database(path, { strict: true })
    this.#db.run("PRAGMA journal_mode = WAL")
    this.#db.run("PRAGMA synchronous = NORMAL")
    this.#db.run(SCHEMA)

    for (const { id, name } of this.#db.query<{ id: number; name: string }, []>("SELECT id, name FROM topics").all()) {
      this.#topicIds.set(name, id)
    }
    this.#lastSeq = this.#db.query<{ last: number | null }, []>("SELECT max(seq) AS last FROM messages").get()?.last ?? 0

    this.#insertTopic = this.#db.prepare("INSERT INTO topics (name) VALUES (?) RETURNING id")
    this.#insertMessage = this.#db.prepare(
      "INSERT INTO messages (seq, topic_id, put_at, payload) VALUES (?, ?, ?, ?)",
    )
    // `+?` rather than `?`: Bun's SQLite re-prepares a statement whenever a value is bound to a
    // bare parameter compared with an index's first column (so the planner can look at it),
    // which made every get cost ~5 µs. The expression keeps the same index seek, prepared once.
    this.#oldestAfter = this.#db.prepare(
      "SELECT seq, payload, put_at AS putAt FROM messages WHERE topic_id = +? AND seq > ? ORDER BY seq ASC LIMIT 1",
    )
    this.#newestAfter = this.#db.prepare(
      "SELECT seq, payload, put_at AS putAt FROM messages WHERE topic_id = +? AND seq > ? ORDER BY seq DESC LIMIT 1",
    )
    this.#insertMany = this.#db.transaction((entries: readonly { topic: string; payload: Uint8Array }[], putAt: number) => {
      let seq = this.#lastSeq
      for (const entry of entries) this.#insertMessage.run(++seq, this.#topicId(entry.topic), putAt, entry.payload)
    })
    const totals = this.#db
      .query<{ count: number; bytes: number | null }, []>("SELECT count(*) AS count, sum(length(payload)) AS bytes FROM messages")
      .get()
    this.#messageCount = totals?.count ?? 0
    this.#bytes = totals?.bytes ?? 0
  }

  /** The sequence number of the newest message ever stored (0 when none). */
  get lastSeq(): number {
    return this.#lastSeq
  }

  /** Stores a message and returns its sequence number. The payload is copied into SQLite. */
  put(topic: string, payload: Uint8Array, putAt = preciseNow()): number {
    const seq = this.#lastSeq + 1
    this.#insertMessage.run(seq, this.#topicId(topic), putAt, payload)
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
    const first = this.#lastSeq + 1
    const knownTopics = this.#topicIds.size
    try {
      this.#insertMany(entries, putAt)
    } catch (error) {
      // Rolled back: forget topic ids made inside the transaction (Map keeps insertion order).
      for (const name of [...this.#topicIds.keys()].slice(knownTopics)) this.#topicIds.delete(name)
      throw error
    }
    this.#lastSeq += entries.length
    this.#messageCount += entries.length
    for (const entry of entries) this.#bytes += entry.payload.length
    return first
  }

  /** The oldest message of `topic` with a sequence number above `afterSeq`. */
  oldestAfter(topic: string, afterSeq: number): StoredMessage | null {
    const id = this.#topicIds.get(topic)
    return id === undefined ? null : this.#oldestAfter.get(id, afterSeq)
  }

  /** The newest message of `topic` with a sequence number above `afterSeq`. */
  newestAfter(topic: string, afterSeq: number): StoredMessage | null {
    const id = this.#topicIds.get(topic)
    return id === undefined ? null : this.#newestAfter.get(id, afterSeq)
  }

  get messageCount(): number {
    return this.#messageCount
  }

  /** Payload bytes of all stored messages. */
  get payloadBytes(): number {
    return this.#bytes
  }

  get topicCount(): number {
    return this.#topicIds.size
  }

  close(): void {
    for (const statement of [
      this.#insertTopic,
      this.#insertMessage,
      this.#oldestAfter,
      this.#newestAfter,
    ]) {
      statement.finalize()
    }
    this.#db.close()
  }

  #topicId(topic: string): number {
    let id = this.#topicIds.get(topic)
    if (id === undefined) {
      id = this.#insertTopic.get(topic)!.id
      this.#topicIds.set(topic, id)
    }
    return id
  }
}
