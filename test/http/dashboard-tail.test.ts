/** The dashboard tail's ring: the newest messages between two updates, read from a real store; the rest counted. */
import { describe, expect, test } from "bun:test"
import { DashboardTail, TAIL_PREVIEW_BYTES } from "../../src/http/dashboard-tail.ts"
import { Store } from "../../src/store/store.ts"

const text = (value: string) => new TextEncoder().encode(value)

/** A tail over a fresh in-memory store, told of each message as the broker would be. */
function tailOver(name: string, capacity: number, readable?: (topic: string) => boolean) {
  const store = new Store({ sync: "normal" })
  const tail = new DashboardTail(name, capacity, readable, (seq, max) => store.preview(seq, max))
  const put = (topic: string, payload: Uint8Array) => tail.onPut(topic, store.put(topic, payload))
  return { store, tail, put, [Symbol.dispose]: () => store.close() }
}

describe("DashboardTail", () => {
  test("keeps the newest `capacity` messages, oldest first, and counts the ones passed over", () => {
    using t = tailOver("lab/#", 3)
    for (let i = 1; i <= 10; i++) t.put("lab/a", text(`m${i}`))
    const batch = t.tail.take()
    expect(batch.skipped).toBe(7)
    expect(batch.messages.map((message) => [message.seq, message.text])).toEqual([
      [8, "m8"],
      [9, "m9"],
      [10, "m10"],
    ])
    expect(t.tail.take()).toEqual({ messages: [], skipped: 0 })
  })

  test("shows what was stored, not what a reused input buffer holds later", () => {
    using t = tailOver("t", 10)
    const buffer = text("first")
    t.put("t", buffer)
    buffer.set(text("xxxxx"))
    expect(t.tail.take().messages[0]!.text).toBe("first")
  })

  test("a message retention removed before the update is counted as passed over", () => {
    using t = tailOver("t", 10)
    t.put("t", text("gone"))
    t.put("t", text("kept"))
    t.store.dropOldest(t.store.topic("t")!, [{ seq: 1, ordinal: 1, bytes: 4, putAt: 0 }])
    expect(t.tail.take()).toMatchObject({ skipped: 1, messages: [{ seq: 2, text: "kept" }] })
  })

  test("skips topics the viewer may not read", () => {
    using t = tailOver("#", 10, (topic) => topic.startsWith("lab/"))
    t.put("office/door", text("secret"))
    t.put("lab/t", text("ok"))
    expect(t.tail.take().messages.map((message) => message.topic)).toEqual(["lab/t"])
  })

  test("text when the preview is UTF-8 (even cut inside a character), hex when not; the full size either way", () => {
    using t = tailOver("t", 10)
    // A three-byte character straddles the preview's end.
    const cut = text(`${"a".repeat(TAIL_PREVIEW_BYTES - 1)}€tail`)
    t.put("t", cut)
    t.put("t", new Uint8Array([0xc3, 0x28]))
    const [first, second] = t.tail.take().messages
    expect(first).toMatchObject({ text: "a".repeat(TAIL_PREVIEW_BYTES - 1), truncated: true, bytes: cut.length })
    expect(second).toMatchObject({ hex: "c328", truncated: false, bytes: 2 })
  })
})
