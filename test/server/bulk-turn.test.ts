/** BulkTurn on its own: room per turn, waiters in order, and a failing waiter that does not stop the others. */
import { expect, test } from "bun:test"
import { BulkTurn } from "../../src/server/bulk-turn.ts"

function pacer(maxBytes: number): { bulk: BulkTurn; nextTurn: () => void } {
  const later: (() => void)[] = []
  const bulk = new BulkTurn(maxBytes, (task) => later.push(task))
  const nextTurn = (): void => {
    for (const task of later.splice(0)) task()
  }
  return { bulk, nextTurn }
}

test("there is room until the turn's bytes reach the cap; a new turn starts with all of it", () => {
  const { bulk, nextTurn } = pacer(1000)
  expect(bulk.hasRoom).toBe(true)
  bulk.count(600)
  expect(bulk.hasRoom).toBe(true)
  bulk.count(400)
  expect(bulk.hasRoom).toBe(false)
  nextTurn()
  expect(bulk.hasRoom).toBe(true)
})

test("while anyone waits there is no room for newcomers; the waiters go first, in order, as long as there is room", () => {
  const { bulk, nextTurn } = pacer(1000)
  const resumed: string[] = []
  bulk.count(1000)
  for (const name of ["a", "b", "c"])
    bulk.wait(() => {
      resumed.push(name)
      // Each finds room, and uses half a turn's.
      expect(bulk.hasRoom).toBe(true)
      bulk.count(500)
    })
  nextTurn()
  expect(resumed).toEqual(["a", "b"])
  nextTurn()
  expect(resumed).toEqual(["a", "b", "c"])
  expect(bulk.waitingCount).toBe(0)
  nextTurn()
  expect(bulk.hasRoom).toBe(true)
  // Someone waiting: a newcomer finds no room, however little this turn produced.
  bulk.wait(() => {})
  expect(bulk.hasRoom).toBe(false)
  nextTurn()
  expect(bulk.hasRoom).toBe(true)
})

test("a waiter that throws does not keep the others waiting; its error surfaces after they ran", () => {
  const { bulk, nextTurn } = pacer(1000)
  const resumed: string[] = []
  bulk.count(1000)
  bulk.wait(() => {
    throw new Error("broken connection")
  })
  bulk.wait(() => resumed.push("after"))
  expect(nextTurn).toThrow("broken connection")
  expect(resumed).toEqual(["after"])
  expect(bulk.waitingCount).toBe(0)
})
