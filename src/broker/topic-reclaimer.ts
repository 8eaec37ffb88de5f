/**
 * Reclaims topics that retention emptied, so that a stream of short-lived topic names does
 * not grow the store forever. A topic goes once it holds no messages, no named cursor keeps a
 * place in it, and no open reader does (a reader's place in it is what its missed counts are
 * counted from; readers say when they take and give up places, so the check is one look-up).
 * Topics kept by open readers go when the last of them closes; topics kept by named cursors
 * stay, as named cursors do. A later put starts the topic anew.
 *
 * The work is deferred to a microtask, after the put or sweep step that emptied the topics,
 * and bounded per pass, so it never runs inside retention's own bookkeeping.
 */
import type { Store, TopicState } from "../store/store.ts"

/** Emptied topics looked at per pass; more wait for the next turn of the event loop. */
const TOPICS_PER_PASS = 256

export class TopicReclaimer {
  readonly #store: Store
  /** Open readers keeping a place in each topic, by topic name. */
  readonly #places = new Map<string, number>()
  /** Emptied topics to look at in the next pass. */
  readonly #emptied = new Set<TopicState>()
  #scheduled = false
  /** Topics reclaimed since the broker started. */
  reclaimedCount = 0

  constructor(store: Store) {
    this.#store = store
  }

  /** Whether a pass is due: emptied topics not looked at yet. */
  get pending(): boolean {
    return this.#scheduled || this.#emptied.size > 0
  }

  /** Retention removed the last message of `topic`. */
  emptied(topic: TopicState): void {
    this.#emptied.add(topic)
    this.#schedule(queueMicrotask)
  }

  /** An open reader keeps a place in `topic` from now until it closes. */
  placeTaken(topic: string): void {
    this.#places.set(topic, (this.#places.get(topic) ?? 0) + 1)
  }

  /** A reader closed, giving up its places: topics only it kept may go now. */
  placesReleased(topics: Iterable<string>): void {
    for (const topic of topics) {
      const left = (this.#places.get(topic) ?? 1) - 1
      if (left > 0) {
        this.#places.set(topic, left)
        continue
      }
      this.#places.delete(topic)
      const state = this.#store.topic(topic)
      if (state !== undefined && state.count === 0) this.emptied(state)
    }
  }

  #schedule(later: (task: () => void) => void): void {
    if (this.#scheduled) return
    this.#scheduled = true
    later(() => {
      this.#scheduled = false
      this.#pass()
    })
  }

  #pass(): void {
    // The broker's owner closed the store since this pass was scheduled.
    if (!this.#store.isOpen) return
    let looked = 0
    // Deleting from a Set while iterating it is safe: what was deleted is not visited.
    for (const topic of this.#emptied) {
      if (looked++ === TOPICS_PER_PASS) {
        this.#schedule((task) => setTimeout(task, 0))
        return
      }
      this.#emptied.delete(topic)
      // Kept by a reader: looked at again when the last one closes.
      const current = this.#store.topic(topic.name) === topic && topic.count === 0
      if (current && !this.#places.has(topic.name) && !this.#store.hasNamedCursor(topic)) {
        this.#store.reclaim(topic)
        this.reclaimedCount++
      }
    }
  }
}
