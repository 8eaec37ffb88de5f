import { expect, test } from "bun:test"
import { ConnectionLifecycle, Lifecycle } from "../../src/server/lifecycle.ts"

const through = (...states: Lifecycle[]) => {
  const lifecycle = new ConnectionLifecycle()
  for (const state of states) expect(lifecycle.moveTo(state)).toBe(true)
  return lifecycle
}

test("an open connection reads, decodes and runs", () => {
  const lifecycle = new ConnectionLifecycle()
  expect([lifecycle.state, lifecycle.reads, lifecycle.decodes, lifecycle.runs]).toEqual([Lifecycle.open, true, true, true])
})

test("after a half-close it decodes and runs what it has, reading nothing more", () => {
  const lifecycle = through(Lifecycle.inputEnded)
  expect([lifecycle.reads, lifecycle.decodes, lifecycle.runs]).toEqual([false, true, true])
})

test("draining runs what was decoded; closing runs nothing; ended and closed do nothing", () => {
  expect([through(Lifecycle.draining).decodes, through(Lifecycle.draining).runs]).toEqual([false, true])
  for (const states of [[Lifecycle.closing], [Lifecycle.closing, Lifecycle.ended], [Lifecycle.closed]]) {
    const lifecycle = through(...states)
    expect([lifecycle.reads, lifecycle.decodes, lifecycle.runs]).toEqual([false, false, false])
  }
  expect(through(Lifecycle.closed).isClosed).toBe(true)
})

test("no way back: a stopping connection never reopens, a closed one never moves", () => {
  const closing = through(Lifecycle.closing)
  for (const back of [Lifecycle.open, Lifecycle.inputEnded, Lifecycle.draining]) expect(closing.moveTo(back)).toBe(false)
  expect(closing.state).toBe(Lifecycle.closing)
  const draining = through(Lifecycle.inputEnded, Lifecycle.draining)
  expect(draining.moveTo(Lifecycle.inputEnded)).toBe(false)
  const closed = through(Lifecycle.closed)
  for (const state of Object.values(Lifecycle)) expect(closed.moveTo(state)).toBe(false)
  expect(through(Lifecycle.closing, Lifecycle.ended, Lifecycle.closed).isClosed).toBe(true)
})
