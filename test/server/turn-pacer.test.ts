/** TurnPacer on its own: room per turn, for output and for requests, waiters in order, and a failing waiter that does not stop the others. */
import { expect, test } from "bun:test"
import { TurnPacer } from "../../src/server/turn-pacer.ts"

function makePacer(maxBytes: number, maxRuns = 1000): { pacer: TurnPacer; nextTurn: () => void } {
  const later: (() => void)[] = []
  const pacer = new TurnPacer(maxBytes, maxRuns, (task) => later.push(task))
  const nextTurn = (): void => {
    for (const task of later.splice(0)) task()
  }
  return { pacer, nextTurn }
}

test("there is room until the turn's bytes reach the cap; a new turn starts with all of it", () => {
  const { pacer, nextTurn } = makePacer(1000)
  expect(pacer.hasRoom).toBe(true)
  pacer.count(600)
  expect(pacer.hasRoom).toBe(true)
  pacer.count(400)
  expect(pacer.hasRoom).toBe(false)
  nextTurn()
  expect(pacer.hasRoom).toBe(true)
})

test("while anyone waits there is no room for newcomers; the waiters go first, in order, as long as there is room", () => {
  const { pacer, nextTurn } = makePacer(1000)
  const resumed: string[] = []
  pacer.count(1000)
  for (const name of ["a", "b", "c"])
    pacer.wait(() => {
      resumed.push(name)
      // Each finds room, and uses half a turn's.
      expect(pacer.hasRoom).toBe(true)
      pacer.count(500)
    })
  nextTurn()
  expect(resumed).toEqual(["a", "b"])
  nextTurn()
  expect(resumed).toEqual(["a", "b", "c"])
  expect(pacer.waitingCount).toBe(0)
  nextTurn()
  expect(pacer.hasRoom).toBe(true)
  // Someone waiting: a newcomer finds no room, however little this turn produced.
  pacer.wait(() => {})
  expect(pacer.hasRoom).toBe(false)
  nextTurn()
  expect(pacer.hasRoom).toBe(true)
})

test("a waiter that throws does not keep the others waiting; its error surfaces after they ran", () => {
  const { pacer, nextTurn } = makePacer(1000)
  const resumed: string[] = []
  pacer.count(1000)
  pacer.wait(() => {
    throw new Error("broken connection")
  })
  pacer.wait(() => resumed.push("after"))
  expect(nextTurn).toThrow("broken connection")
  expect(resumed).toEqual(["after"])
  expect(pacer.waitingCount).toBe(0)
})

test("requests: room until the turn's runs reach the cap; waiters resume while there is room; each new turn has its own number", () => {
  const { pacer, nextTurn } = makePacer(1000, 10)
  const turn = pacer.turn
  for (let i = 0; i < 9; i++) pacer.countRun()
  expect(pacer.hasRunRoom).toBe(true)
  pacer.countRun()
  expect(pacer.hasRunRoom).toBe(false)
  const resumed: string[] = []
  for (const name of ["a", "b", "c"])
    pacer.wait(() => {
      resumed.push(name)
      // Each runs six requests: the second fills the turn.
      for (let i = 0; i < 6; i++) pacer.countRun()
    })
  nextTurn()
  expect(pacer.turn).not.toBe(turn)
  expect(resumed).toEqual(["a", "b"])
  const second = pacer.turn
  nextTurn()
  expect(resumed).toEqual(["a", "b", "c"])
  expect(pacer.turn).not.toBe(second)
  expect(pacer.hasRunRoom).toBe(true)
})
