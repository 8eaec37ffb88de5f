/**
 * Store and Reader costs against the number of stored messages and of topics.
 *
 *   bun run bench/store.bench.ts          (BENCH_QUICK=1 for at most 10,000 stored messages)
 *
 * Every store is an in-memory Store filled once, before any measurement, with 64-byte payloads
 * put round-robin over its topics (message `seq` goes to topic (seq - 1) % topics). Reads never
 * change a store, so the same look-ups can be repeated; `put` grows its store, so the put group
 * runs last and the final sizes are printed.
 */
import { bench, do_not_optimize, group, summary } from "mitata"
import { Broker, Reader } from "../src/broker/broker.ts"
import { Store } from "../src/store/store.ts"
import {
  ALLOCATING_GC,
  formatCount,
  formatMicros,
  printTable,
  QUICK,
  runBenchmarks,
  seededRandom,
  withParam,
  writeResults,
} from "./common.ts"

const PAYLOAD_BYTES = 64
/** Distinct look-ups cycled through; a power of two so the index wraps with a mask. */
const LOOKUPS = 4096
const MASK = LOOKUPS - 1

interface Config {
  readonly messages: number
  readonly topics: number
}

const MAX_MESSAGES = QUICK ? 10_000 : 1_000_000
const CONFIGS: readonly Config[] = [
  { messages: 1, topics: 1 },
  { messages: 10_000, topics: 1 },
  ...(QUICK ? [] : [{ messages: 1_000_000, topics: 1 }]),
  { messages: MAX_MESSAGES, topics: 10_000 },
]

/** A filled store plus precomputed look-ups that are guaranteed to find a message. */
interface Fixture {
  readonly config: Config
  readonly label: string
  readonly store: Store
  readonly broker: Broker
  readonly topicNames: readonly string[]
  /** Look-up i asks topic lookupTopics[i] for what follows cursor lookupCursors[i]. */
  readonly lookupTopics: readonly string[]
  readonly lookupCursors: readonly number[]
  readonly fillMs: number
}

const payload = new Uint8Array(PAYLOAD_BYTES)
for (let i = 0; i < PAYLOAD_BYTES; i++) payload[i] = 0x61 + (i % 26)

function label({ messages, topics }: Config): string {
  return `${formatCount(messages)} msg${messages === 1 ? "" : "s"} / ${formatCount(topics)} topic${topics === 1 ? "" : "s"}`
}

function prepare(config: Config, seed: number): Fixture {
  const { messages, topics } = config
  const store = new Store()
  const topicNames = Array.from({ length: topics }, (_, k) => `topic-${k}`)

  const started = Bun.nanoseconds()
  for (let seq = 1; seq <= messages; seq++) store.put(topicNames[(seq - 1) % topics]!, payload)
  const fillMs = (Bun.nanoseconds() - started) / 1e6

  // A random topic that holds a message, and a random cursor below that topic's newest
  // message, so oldestAfter finds one somewhere inside the topic and newestAfter finds its end.
  const random = seededRandom(seed)
  const usedTopics = Math.min(topics, messages)
  const lookupTopics: string[] = []
  const lookupCursors: number[] = []
  for (let i = 0; i < LOOKUPS; i++) {
    const k = Math.floor(random() * usedTopics)
    const inTopic = Math.floor((messages - 1 - k) / topics) + 1
    const newest = k + 1 + (inTopic - 1) * topics
    lookupTopics.push(topicNames[k]!)
    lookupCursors.push(Math.floor(random() * newest))
  }

  const fixture = {
    config,
    label: label(config),
    store,
    broker: new Broker(store),
    topicNames,
    lookupTopics,
    lookupCursors,
    fillMs,
  }
  check(fixture)
  return fixture
}

/** The measured calls must do what they claim: hit for get-like calls, miss for polling. */
function check({ store, broker, lookupTopics, lookupCursors, config }: Fixture): void {
  if (store.lastSeq !== config.messages) throw new Error(`store holds ${store.lastSeq}, expected ${config.messages}`)
  for (let i = 0; i < LOOKUPS; i++) {
    const topic = lookupTopics[i]!
    const cursor = lookupCursors[i]!
    const oldest = store.oldestAfter(topic, cursor)
    const newest = store.newestAfter(topic, cursor)
    if (oldest === null || oldest.seq <= cursor || newest === null || newest.seq < oldest.seq) {
      throw new Error(`look-up ${i} (${topic} after ${cursor}) does not find a message`)
    }
    if (oldest.payload.length !== PAYLOAD_BYTES) throw new Error("wrong payload size")
    if (new Reader(broker, cursor, null, broker.maxCursors, false).get(topic)?.seq !== oldest.seq)
      throw new Error("Reader.get disagrees with oldestAfter")
  }
  if (broker.openReader().get(lookupTopics[0]!) !== null) throw new Error("a new reader sees an old message")
}

console.log(
  `Store benchmarks${QUICK ? " (quick)" : ""}: ${PAYLOAD_BYTES}-byte payloads, in-memory bun:sqlite, filled with Store.put in a loop`,
)
const fixtures = CONFIGS.map((config, index) => {
  const fixture = prepare(config, 0x5eed + index)
  const perPut = config.messages >= 1000 ? ` (${((fixture.fillMs * 1000) / config.messages).toFixed(2)} µs per put)` : ""
  console.log(`  filled ${fixture.label.padEnd(22)} in ${(fixture.fillMs / 1000).toFixed(2).padStart(5)} s${perPut}`)
  return fixture
})
console.log()

const name = (operation: string, fixture: Fixture): string => `${operation} · ${fixture.label}`

group("Store.oldestAfter (what get uses): a message inside the topic", () => {
  summary(() => {
    for (const fixture of fixtures) {
      const { store, lookupTopics, lookupCursors } = fixture
      bench(name("oldestAfter", fixture), function* () {
        let i = 0
        yield () => {
          const j = i++ & MASK
          do_not_optimize(store.oldestAfter(lookupTopics[j]!, lookupCursors[j]!))
        }
      }).gc(ALLOCATING_GC)
    }
  })
})

group("Store.newestAfter (what get_latest uses): the topic's newest message", () => {
  summary(() => {
    for (const fixture of fixtures) {
      const { store, lookupTopics, lookupCursors } = fixture
      bench(name("newestAfter", fixture), function* () {
        let i = 0
        yield () => {
          const j = i++ & MASK
          do_not_optimize(store.newestAfter(lookupTopics[j]!, lookupCursors[j]!))
        }
      }).gc(ALLOCATING_GC)
    }
  })
})

group("Reader.get through a Broker: cursor look-up + oldestAfter + cursor update", () => {
  summary(() => {
    for (const fixture of fixtures) {
      const { broker, lookupTopics, lookupCursors } = fixture
      bench(name("Reader.get", fixture), function* () {
        // Every call gets a fresh reader whose cursor sits inside the topic (made outside the
        // timed region), so the data is never used up: the timed get is that reader's first on
        // the topic (a cursor-map miss, then an insert).
        let i = 0
        yield withParam(
          () => {
            const j = i++ & MASK
            return { reader: new Reader(broker, lookupCursors[j]!, null, broker.maxCursors, false), topic: lookupTopics[j]! }
          },
          ({ reader, topic }) => do_not_optimize(reader.get(topic)),
        )
      }).gc(ALLOCATING_GC)
    }
  })
})

group("Reader.get with nothing new (a polling client): cursor look-up + oldestAfter miss", () => {
  summary(() => {
    for (const fixture of fixtures) {
      const { broker, lookupTopics } = fixture
      bench(name("Reader.get (empty)", fixture), function* () {
        const reader = broker.openReader()
        let i = 0
        yield () => do_not_optimize(reader.get(lookupTopics[i++ & MASK]!))
      })
    }
  })
})

// Last: every put adds a row to the store it measures.
group("Store.put: 64-byte payload, to an existing topic (grows the store while it runs)", () => {
  summary(() => {
    for (const fixture of fixtures) {
      const { store, lookupTopics } = fixture
      bench(name("put", fixture), function* () {
        let i = 0
        yield () => do_not_optimize(store.put(lookupTopics[i++ & MASK]!, payload))
      })
      // What an acknowledged put costs: the session commits before the reply leaves (a no-op
      // in a memory store, whose group lasts until the end of the turn).
      bench(name("put+commit", fixture), function* () {
        let i = 0
        yield () => {
          do_not_optimize(store.put(lookupTopics[i++ & MASK]!, payload))
          store.commit()
        }
      })
    }
  })
})

const stats = await runBenchmarks()

const operations = [
  ["put", "put"],
  ["put+commit", "put, commit"],
  ["oldestAfter", "oldestAfter"],
  ["newestAfter", "newestAfter"],
  ["Reader.get", "Reader.get"],
  ["Reader.get (empty)", "get, empty"],
] as const
const rows = fixtures.map((fixture) => {
  const cells = operations.map(([operation]) => {
    const result = stats.get(name(operation, fixture))
    return result === undefined ? "-" : formatMicros(result.p50)
  })
  return [fixture.label, ...cells, formatCount(fixture.store.lastSeq - fixture.config.messages)]
})
printTable(
  "Store summary: median µs per call (p50; mitata's table above shows the mean)",
  ["stored", ...operations.map(([, heading]) => heading), "rows put"],
  rows,
)

for (const fixture of fixtures) fixture.store.close()

await writeResults("store")
