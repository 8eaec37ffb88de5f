/**
 * What patterns cost: a put's fan-out with and without 10,000 pattern subscriptions that do
 * not match it (the subject index finds the matching ones without trying each), and a wildcard
 * get over 10 and 1,000 matching topics, when every topic has unread messages and when one has.
 *
 *   bun run bench/patterns.bench.ts          (BENCH_QUICK=1: fewer topics)
 */
import { bench, do_not_optimize, group, summary } from "mitata"
import { Broker, Reader, type Subscriber } from "../src/broker/broker.ts"
import { Store } from "../src/store/store.ts"
import { formatMicros, printTable, QUICK, runBenchmarks, withParam, writeResults } from "./common.ts"

const payload = new Uint8Array(64).fill(0x61)
const NON_MATCHING = 10_000
const TOPIC_COUNTS = QUICK ? [10, 100] : [10, 1000]

/** A subscriber that only counts, so the bench measures the broker, not a socket. */
function counter(): Subscriber & { count: number } {
  return {
    count: 0,
    onPut() {
      this.count++
    },
  }
}

function fanOutBroker(nonMatching: number): { broker: Broker; store: Store; delivered: { count: number } } {
  const store = new Store()
  const broker = new Broker(store)
  const delivered = counter()
  broker.subscribe("lab/t", delivered)
  broker.subscribe("lab/#", counter())
  for (let i = 0; i < nonMatching; i++) broker.subscribe(i % 2 === 0 ? `other/${i}/#` : `site/+/${i}`, counter())
  return { broker, store, delivered }
}

const fanOuts = [0, NON_MATCHING].map((nonMatching) => ({ nonMatching, ...fanOutBroker(nonMatching) }))

group("put + deliver to one exact and one lab/# subscriber, beside non-matching pattern subscriptions", () => {
  summary(() => {
    for (const { nonMatching, broker } of fanOuts) {
      bench(`put, ${nonMatching} non-matching patterns`, () => do_not_optimize(broker.put("lab/t", payload)))
    }
  })
})

/** N topics lab/0..lab/N-1, 4 messages each, put round-robin. */
function pullBroker(topics: number): { broker: Broker; store: Store; lastSeq: number } {
  const store = new Store()
  const broker = new Broker(store)
  for (let round = 0; round < 4; round++) for (let i = 0; i < topics; i++) broker.put(`lab/${i}`, payload)
  return { broker, store, lastSeq: store.lastSeq }
}

const pulls = TOPIC_COUNTS.map((topics) => ({ topics, ...pullBroker(topics) }))

group('Reader.get("lab/#"): the oldest unread message among the matching topics', () => {
  summary(() => {
    for (const { topics, broker, lastSeq } of pulls) {
      // Every topic has unread messages: one look-up per matching topic.
      bench(`get lab/#, ${topics} topics, all unread`, function* () {
        yield withParam(
          () => new Reader(broker, lastSeq - topics, null, broker.maxCursors, false),
          (reader) => do_not_optimize(reader.get("lab/#")),
        )
      })
      // Only the newest topic has one: the others cost a comparison, not a look-up.
      bench(`get lab/#, ${topics} topics, one unread`, function* () {
        yield withParam(
          () => new Reader(broker, lastSeq - 1, null, broker.maxCursors, false),
          (reader) => do_not_optimize(reader.get("lab/#")),
        )
      })
    }
  })
})

const stats = await runBenchmarks()
const p50 = (name: string): string => {
  const result = stats.get(name)
  return result === undefined ? "-" : formatMicros(result.p50)
}
const ratio = (a: string, b: string): string => {
  const [x, y] = [stats.get(a)?.p50, stats.get(b)?.p50]
  return x === undefined || y === undefined ? "-" : `${(x / y).toFixed(2)}x`
}
const fanOutNames = fanOuts.map(({ nonMatching }) => `put, ${nonMatching} non-matching patterns`)
printTable(
  "Patterns: put fan-out (median µs per put, one exact and one lab/# subscriber)",
  ["non-matching pattern subscriptions", "put + deliver", "vs none"],
  fanOuts.map(({ nonMatching }, i) => [String(nonMatching), p50(fanOutNames[i]!), ratio(fanOutNames[i]!, fanOutNames[0]!)]),
)
printTable(
  "Patterns: wildcard get (median µs per get)",
  ["matching topics", "all have unread", "one has unread"],
  pulls.map(({ topics }) => [
    String(topics),
    p50(`get lab/#, ${topics} topics, all unread`),
    p50(`get lab/#, ${topics} topics, one unread`),
  ]),
)
for (const { delivered } of fanOuts) if (delivered.count === 0) throw new Error("the exact subscriber got nothing")
for (const fixture of [...fanOuts, ...pulls]) fixture.store.close()
await writeResults("patterns")
