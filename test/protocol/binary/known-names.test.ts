import { describe, expect, test } from "bun:test"
import { Op } from "../../../src/protocol/binary/constants.ts"
import { KnownNames } from "../../../src/protocol/binary/known-names.ts"
import { readRequest } from "../../../src/protocol/binary/request.ts"
import { encodeRequests } from "../../binary-frames.ts"

const utf8 = new TextEncoder()

describe("KnownNames", () => {
  test("finds a remembered name by its bytes anywhere in a buffer, and nothing else", () => {
    const names = new KnownNames()
    const frame = utf8.encode("..lab/temperature..")
    expect(names.find(frame, 2, 15)).toBeNull()
    names.remember(frame, 2, 15, "lab/temperature")
    expect(names.find(utf8.encode("lab/temperature"), 0, 15)).toBe("lab/temperature")
    // A prefix, a longer name, one changed byte: not the same name.
    expect(names.find(utf8.encode("lab/temperatur"), 0, 14)).toBeNull()
    expect(names.find(utf8.encode("lab/temperature2"), 0, 16)).toBeNull()
    expect(names.find(utf8.encode("lab/temperaturf"), 0, 15)).toBeNull()
  })

  test("keeps a copy: the frame's memory may be reused", () => {
    const names = new KnownNames()
    const frame = utf8.encode("abc")
    names.remember(frame, 0, 3, "abc")
    frame.fill(0)
    expect(names.find(utf8.encode("abc"), 0, 3)).toBe("abc")
  })

  test("a name replaces another in its slot only when it comes twice in a row", () => {
    const remembered = (names: KnownNames, name: string): string | null => {
      const bytes = utf8.encode(name)
      return names.find(bytes, 0, bytes.length)
    }
    const remember = (names: KnownNames, name: string): void => {
      const bytes = utf8.encode(name)
      names.remember(bytes, 0, bytes.length, name)
    }
    // A name that shares the slot of "held" (1 in 256 do): the only other name in the table.
    let names = new KnownNames()
    let rival: string | null = null
    for (let i = 0; i < 100_000 && rival === null; i++) {
      names = new KnownNames()
      remember(names, "held")
      remember(names, `rival/${i}`)
      if (remembered(names, `rival/${i}`) === null) rival = `rival/${i}`
    }
    expect(rival).not.toBeNull()
    // Seen once: "held" stays.
    expect(remembered(names, "held")).toBe("held")
    // Another name in between breaks the run: still once in a row.
    remember(names, "held")
    remember(names, rival!)
    expect(remembered(names, "held")).toBe("held")
    // Twice in a row: it takes the slot.
    remember(names, rival!)
    expect(remembered(names, rival!)).toBe(rival)
    expect(remembered(names, "held")).toBeNull()
  })

  test("holds a bounded number of names: thousands of distinct ones leave at most its slots", () => {
    const names = new KnownNames()
    for (let i = 0; i < 5000; i++) {
      const bytes = utf8.encode(`t/${i}`)
      names.remember(bytes, 0, bytes.length, `t/${i}`)
    }
    let found = 0
    for (let i = 0; i < 5000; i++) {
      const bytes = utf8.encode(`t/${i}`)
      const name = names.find(bytes, 0, bytes.length)
      if (name !== null) {
        expect(name).toBe(`t/${i}`)
        found++
      }
    }
    expect(found).toBeGreaterThan(0)
    expect(found).toBeLessThanOrEqual(256)
  })
})

describe("request topics read through the known names", () => {
  test("a topic read again is the same string; a refused name stays refused", () => {
    const get = (topic: string) => readRequest(encodeRequests({ op: Op.get, requestId: 1, topic }))
    const first = get("known/topic")
    const again = get("known/topic")
    expect(again).toEqual(first)
    expect(again).toMatchObject({ topic: "known/topic" })
    for (let i = 0; i < 2; i++) expect(get("bad\u0001topic")).toMatchObject({ op: "rejected" })
  })
})
