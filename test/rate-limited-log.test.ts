import { expect, test } from "bun:test"
import { rateLimitedLog } from "../src/rate-limited-log.ts"

test("writes at most N lines a second, then says how many it dropped", () => {
  const lines: string[] = []
  let time = 10_000
  const log = rateLimitedLog(
    (line) => lines.push(line),
    2,
    () => time,
  )
  for (let i = 0; i < 5; i++) log(`a${i}`)
  time += 1000
  log("b0")
  log("b1")
  expect(lines).toEqual(["a0", "a1", "(3 more log lines dropped in the last second)", "b0", "b1"])
})
