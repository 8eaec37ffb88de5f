import { describe, expect, test } from "bun:test"
import { EndOfTurn } from "../../src/server/end-of-turn.ts"

/** Resolves in a turn after the tasks EndOfTurn scheduled before it ran (setImmediate is FIFO). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("EndOfTurn", () => {
  test("runs each task once, after the current handler, in the order scheduled", async () => {
    const turn = new EndOfTurn()
    const ran: string[] = []
    turn.schedule(() => ran.push("a"))
    turn.schedule(() => ran.push("b"))
    ran.push("handler")
    await nextTurn()
    expect(ran).toEqual(["handler", "a", "b"])
    await nextTurn()
    expect(ran).toEqual(["handler", "a", "b"])
  })

  test("a task scheduled by a running task waits for the next turn", async () => {
    const turn = new EndOfTurn()
    const ran: string[] = []
    turn.schedule(() => {
      ran.push("first")
      turn.schedule(() => ran.push("second"))
    })
    await nextTurn()
    expect(ran).toEqual(["first"])
    await nextTurn()
    expect(ran).toEqual(["first", "second"])
  })

  test("a task that throws is reported, and the tasks after it still run", async () => {
    const errors: unknown[] = []
    const turn = new EndOfTurn((error) => errors.push(error))
    const ran: string[] = []
    turn.schedule(() => {
      throw new Error("one connection failed")
    })
    turn.schedule(() => ran.push("next"))
    await nextTurn()
    expect(ran).toEqual(["next"])
    expect(errors.map((error) => (error as Error).message)).toEqual(["one connection failed"])
  })
})
