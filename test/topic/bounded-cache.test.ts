import { expect, test } from "bun:test"
import { BoundedCache } from "../../src/topic/bounded-cache.ts"

test("holds at most its capacity, forgetting the oldest entry first", () => {
  const cache = new BoundedCache<string, number>(3)
  for (const [i, key] of ["a", "b", "c", "d"].entries()) cache.set(key, i)
  expect(cache.size).toBe(3)
  expect(["a", "b", "c", "d"].map((key) => cache.get(key))).toEqual([undefined, 1, 2, 3])
  // Setting a key that is there replaces it, and forgets nothing.
  cache.set("b", 10)
  expect(["b", "c", "d"].map((key) => cache.get(key))).toEqual([10, 2, 3])
  cache.clear()
  expect(cache.size).toBe(0)
})

test("capacity 0 keeps nothing", () => {
  const cache = new BoundedCache<string, number>(0)
  cache.set("a", 1)
  expect(cache.get("a")).toBeUndefined()
  expect(cache.size).toBe(0)
})
