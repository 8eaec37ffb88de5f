import { describe, expect, test } from "bun:test"
import { compilePattern, PatternError } from "../../src/topic/pattern.ts"
import { MAX_CACHED_MATCHES, SubjectIndex } from "../../src/topic/subject-index.ts"

/** The matches, sorted, so that tests do not depend on the trie's order. */
function matching<T>(index: SubjectIndex<T>, topic: string): T[] {
  return [...index.match(topic)].sort()
}

describe("add, remove, match", () => {
  test("literal names, + for one level, # for the level it hangs below and everything under it", () => {
    const index = new SubjectIndex<string>()
    for (const pattern of ["lab/temp", "lab/+", "lab/#", "+/temp", "#", "office/+/door"]) index.add(pattern, pattern)
    expect(matching(index, "lab/temp")).toEqual(["#", "+/temp", "lab/#", "lab/+", "lab/temp"])
    expect(matching(index, "lab")).toEqual(["#", "lab/#"])
    expect(matching(index, "lab/a/b")).toEqual(["#", "lab/#"])
    expect(matching(index, "office/1/door")).toEqual(["#", "office/+/door"])
    expect(matching(index, "office/door")).toEqual(["#"])
    expect(matching(index, "")).toEqual(["#"])
    // A topic that holds pattern characters (one from before they were reserved) is matched as names.
    expect(matching(index, "lab/#")).toEqual(["#", "lab/#", "lab/+"])
    expect(index.size).toBe(6)
  })

  test("a value matched by several of its patterns comes once; adding a pair twice changes nothing", () => {
    const index = new SubjectIndex<string>()
    index.add("lab/#", "reader")
    index.add("lab/+", "reader")
    index.add("lab/+", "reader")
    expect(index.size).toBe(2)
    expect(index.match("lab/x")).toEqual(["reader"])
  })

  test("remove takes one pair away, says whether it was there, and prunes the nodes left empty", () => {
    const index = new SubjectIndex<number>()
    index.add("a/b/c", 1)
    index.add("a/+/c", 2)
    index.add("a/#", 3)
    index.add("a/b/c", 4)
    // root, a, a/b, a/b/c, a/+, a/+/c; a/# hangs on a.
    expect(index.stats()).toMatchObject({ subscriptions: 4, nodes: 6 })
    expect(matching(index, "a/b/c")).toEqual([1, 2, 3, 4])
    expect(index.remove("a/b/c", 1)).toBe(true)
    expect(index.remove("a/b/c", 1)).toBe(false)
    expect(index.remove("a/b", 4)).toBe(false)
    expect(index.remove("x/y", 4)).toBe(false)
    expect(matching(index, "a/b/c")).toEqual([2, 3, 4])
    expect(index.stats().nodes).toBe(6)
    index.remove("a/b/c", 4)
    expect(index.stats().nodes).toBe(4)
    index.remove("a/+/c", 2)
    expect(index.stats().nodes).toBe(2)
    expect(matching(index, "a/b/c")).toEqual([3])
    index.remove("a/#", 3)
    expect(index.stats()).toMatchObject({ subscriptions: 0, nodes: 1 })
    expect(index.match("a/b/c")).toEqual([])
  })

  test("a bad pattern is refused with PatternError and changes nothing", () => {
    const index = new SubjectIndex<number>()
    for (const pattern of ["a#b", "a/#/b", "#/a", "a+", "+a"]) {
      expect(() => index.add(pattern, 1)).toThrow(PatternError)
      expect(() => index.remove(pattern, 1)).toThrow(PatternError)
    }
    expect(index.stats()).toMatchObject({ subscriptions: 0, nodes: 1, generation: 0 })
  })

  test("agrees with compilePattern on every pair of a few hundred random patterns and topics", () => {
    // A small deterministic generator (a linear congruential one), so that a failure replays.
    let seed = 12345
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    const randomLevels = (names: readonly string[]) => Array.from({ length: 1 + next(4) }, () => names[next(names.length)]!)
    const topics = Array.from({ length: 200 }, () => randomLevels(["a", "b", ""]).join("/"))
    const patterns = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const levels = randomLevels(["a", "b", "", "+"])
      if (next(3) === 0) levels.push("#")
      patterns.add(levels.join("/"))
    }
    const index = new SubjectIndex<string>()
    for (const pattern of patterns) index.add(pattern, pattern)
    for (const topic of topics) {
      const expected = [...patterns].filter((pattern) => compilePattern(pattern)(topic)).sort()
      expect([topic, matching(index, topic)]).toEqual([topic, expected])
    }
  })
})

describe("cost", () => {
  /** Nodes looked at to match `topic`, with the cache left out (a fresh topic each time). */
  function nodesVisited(index: SubjectIndex<number>, topic: string): number {
    const before = index.stats()
    index.match(topic)
    const after = index.stats()
    expect(after.cacheHits).toBe(before.cacheHits)
    return after.nodesVisited - before.nodesVisited
  }

  test("grows with the topic's levels and the matching paths, not with the subscriptions that do not match", () => {
    const index = new SubjectIndex<number>()
    index.add("site/7/door", 0)
    index.add("site/+/door", 1)
    index.add("site/#", 2)
    const few = nodesVisited(index, "site/7/door")
    for (let i = 0; i < 10_000; i++) index.add(`site/${i}/sensor/${i % 10}`, 10 + i)
    for (let i = 0; i < 1000; i++) index.add(`other/${i}/+`, 20_000 + i)
    const many = nodesVisited(index, "site/7/door")
    expect(matching(index, "site/7/door")).toEqual([0, 1, 2])
    // root, site, site/7, site/7/door, site/+, site/+/door.
    expect(few).toBe(6)
    expect(many).toBe(few)
    expect(index.stats().subscriptions).toBe(11_003)
  })

  test("answers are cached per topic, and dropped when subscriptions change", () => {
    const index = new SubjectIndex<string>()
    index.add("lab/#", "first")
    expect(index.match("lab/x")).toEqual(["first"])
    expect(index.match("lab/x")).toEqual(["first"])
    expect(index.stats()).toMatchObject({ matches: 2, cacheHits: 1, cachedTopics: 1, generation: 1 })
    index.add("lab/+", "second")
    expect(index.stats()).toMatchObject({ generation: 2, cachedTopics: 0 })
    expect(matching(index, "lab/x")).toEqual(["first", "second"])
    expect(index.stats()).toMatchObject({ matches: 3, cacheHits: 1 })
    index.remove("lab/#", "first")
    expect(index.match("lab/x")).toEqual(["second"])
    expect(index.stats()).toMatchObject({ matches: 4, cacheHits: 1, generation: 3 })
    // A change that changes nothing keeps the cache.
    index.add("lab/+", "second")
    expect(index.remove("nothing", "second")).toBe(false)
    expect(index.match("lab/x")).toEqual(["second"])
    expect(index.stats()).toMatchObject({ matches: 5, cacheHits: 2, generation: 3 })
  })

  test("the cache holds a bounded number of topics", () => {
    const index = new SubjectIndex<number>()
    index.add("#", 1)
    for (let i = 0; i < MAX_CACHED_MATCHES + 100; i++) index.match(`t/${i}`)
    expect(index.stats().cachedTopics).toBe(MAX_CACHED_MATCHES)
    const small = new SubjectIndex<number>({ maxCachedMatches: 2 })
    small.add("#", 1)
    for (const topic of ["a", "b", "c", "c"]) small.match(topic)
    expect(small.stats()).toMatchObject({ cachedTopics: 2, cacheHits: 1 })
    const none = new SubjectIndex<number>({ maxCachedMatches: 0 })
    none.add("#", 1)
    none.match("a")
    none.match("a")
    expect(none.stats()).toMatchObject({ cachedTopics: 0, cacheHits: 0 })
  })
})
