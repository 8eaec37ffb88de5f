/**
 * Which subscriptions match a topic, in time that grows with the topic's levels and the
 * matches, not with the number of subscriptions: a trie of levels (the shape of NATS's
 * sublist), with a literal child per name, one child for `+`, and the subscriptions of a
 * trailing `#` kept on the node they hang below. A topic visits only the nodes on the paths
 * that match it. Answers are cached per topic; any change of subscriptions bumps a generation
 * counter, and the next match drops the cache.
 */
import { BoundedCache } from "./bounded-cache.ts"
import { parsePattern } from "./pattern.ts"
import { LEVEL_SEPARATOR, SINGLE_LEVEL_WILDCARD } from "./topic-name.ts"

/** Topics whose matches are kept, by default: a bound on memory whatever topics are asked about. */
export const MAX_CACHED_MATCHES = 1024

/** One level of the trie: what the topic levels taken so far lead to. */
class TrieNode<T> {
  /** The next level, by its name. */
  readonly children = new Map<string, TrieNode<T>>()
  /** The next level as `+`: any name. */
  anyLevel: TrieNode<T> | null = null
  /** Patterns that end here: topics with exactly these levels. */
  readonly exact = new Set<T>()
  /** Patterns that end here in `#`: these levels and everything below. */
  readonly andBelow = new Set<T>()

  get isEmpty(): boolean {
    return this.children.size === 0 && this.anyLevel === null && this.exact.size === 0 && this.andBelow.size === 0
  }
}

export interface SubjectIndexStats {
  /** Pattern and value pairs held. */
  readonly subscriptions: number
  /** Trie nodes, the root included. */
  readonly nodes: number
  /** Bumped by every change of subscriptions. */
  readonly generation: number
  /** Calls of match, and those answered from the cache. */
  readonly matches: number
  readonly cacheHits: number
  /** Trie nodes looked at by matches that missed the cache, in all. */
  readonly nodesVisited: number
  readonly cachedTopics: number
}

export class SubjectIndex<T> {
  readonly #root = new TrieNode<T>()
  readonly #cache: BoundedCache<string, readonly T[]>
  #generation = 0
  #cacheGeneration = 0
  #subscriptions = 0
  #nodes = 1
  #matches = 0
  #cacheHits = 0
  #nodesVisited = 0

  constructor(options: { readonly maxCachedMatches?: number } = {}) {
    this.#cache = new BoundedCache(options.maxCachedMatches ?? MAX_CACHED_MATCHES)
  }

  /** Subscribes `value` to `pattern` (a second add of the same pair changes nothing). Throws PatternError. */
  add(pattern: string, value: T): void {
    const { levels, andBelow } = parsePattern(pattern)
    let node = this.#root
    for (const level of levels) {
      let next = level === SINGLE_LEVEL_WILDCARD ? node.anyLevel : node.children.get(level)
      if (next === null || next === undefined) {
        next = new TrieNode<T>()
        this.#nodes++
        if (level === SINGLE_LEVEL_WILDCARD) node.anyLevel = next
        else node.children.set(level, next)
      }
      node = next
    }
    const values = andBelow ? node.andBelow : node.exact
    if (values.has(value)) return
    values.add(value)
    this.#subscriptions++
    this.#generation++
  }

  /** Unsubscribes `value` from `pattern`; false when it was not subscribed. Nodes left empty are removed. */
  remove(pattern: string, value: T): boolean {
    const { levels, andBelow } = parsePattern(pattern)
    const path: TrieNode<T>[] = [this.#root]
    for (const level of levels) {
      const node = path[path.length - 1]!
      const next = level === SINGLE_LEVEL_WILDCARD ? node.anyLevel : node.children.get(level)
      if (next === null || next === undefined) return false
      path.push(next)
    }
    const last = path[path.length - 1]!
    if (!(andBelow ? last.andBelow : last.exact).delete(value)) return false
    this.#subscriptions--
    this.#generation++
    // Prune from the end of the path: a node with nothing in or below it goes.
    for (let depth = levels.length; depth > 0 && path[depth]!.isEmpty; depth--) {
      const parent = path[depth - 1]!
      const level = levels[depth - 1]!
      if (level === SINGLE_LEVEL_WILDCARD) parent.anyLevel = null
      else parent.children.delete(level)
      this.#nodes--
    }
    return true
  }

  /** The values subscribed to a pattern that matches `topic`, each once. Do not modify the result. */
  match(topic: string): readonly T[] {
    this.#matches++
    if (this.#cacheGeneration !== this.#generation) {
      this.#cache.clear()
      this.#cacheGeneration = this.#generation
    }
    const cached = this.#cache.get(topic)
    if (cached !== undefined) {
      this.#cacheHits++
      return cached
    }
    const found = new Set<T>()
    this.#collect(this.#root, topic.split(LEVEL_SEPARATOR), 0, found)
    const result = [...found]
    this.#cache.set(topic, result)
    return result
  }

  get size(): number {
    return this.#subscriptions
  }

  stats(): SubjectIndexStats {
    return {
      subscriptions: this.#subscriptions,
      nodes: this.#nodes,
      generation: this.#generation,
      matches: this.#matches,
      cacheHits: this.#cacheHits,
      nodesVisited: this.#nodesVisited,
      cachedTopics: this.#cacheGeneration === this.#generation ? this.#cache.size : 0,
    }
  }

  /** Adds what matches `levels` from `index` on, `node` standing for the levels before it. */
  #collect(node: TrieNode<T>, levels: readonly string[], index: number, found: Set<T>): void {
    this.#nodesVisited++
    // `#` also matches no further level: `lab/#` matches `lab`.
    for (const value of node.andBelow) found.add(value)
    if (index === levels.length) {
      for (const value of node.exact) found.add(value)
      return
    }
    const named = node.children.get(levels[index]!)
    if (named !== undefined) this.#collect(named, levels, index + 1, found)
    if (node.anyLevel !== null) this.#collect(node.anyLevel, levels, index + 1, found)
  }
}
