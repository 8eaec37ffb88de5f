/** The bench scripts' one argument parser (bench/lib/args.ts). */
import { expect, test } from "bun:test"
import { BenchUsageError, parseOptions } from "../bench/lib/args.ts"

const SPECS = {
  quick: { type: "boolean" },
  seconds: { type: "number", min: 1, max: 60 },
  count: { type: "number", min: 1, max: 10, integer: true },
  mode: { type: "choice", choices: ["a", "b"] },
  only: { type: "list", choices: ["x", "y", "z"] },
  size: {
    type: "string",
    check: (text: string) => {
      if (!/^\d+MiB$/.test(text)) throw new Error(`--size: not a size: ${text}`)
    },
  },
} as const

test("values are typed and checked; absent ones are undefined, booleans false", () => {
  expect(parseOptions(["--seconds", "2.5", "--count=3", "--mode", "b", "--only", "x,y", "--only", "z", "--size", "4MiB"], SPECS)).toEqual({
    quick: false,
    seconds: 2.5,
    count: 3,
    mode: "b",
    only: ["x", "y", "z"],
    size: "4MiB",
  })
  expect(parseOptions(["--quick"], SPECS)).toEqual({
    quick: true,
    seconds: undefined,
    count: undefined,
    mode: undefined,
    only: undefined,
    size: undefined,
  })
  expect(parseOptions(["-h"], SPECS)).toBe("help")
})

test("a bad command line is a BenchUsageError that says what is wrong", () => {
  const problem = (argv: string[]) => {
    try {
      parseOptions(argv, SPECS)
    } catch (error) {
      expect(error).toBeInstanceOf(BenchUsageError)
      return (error as Error).message
    }
    throw new Error(`accepted ${argv.join(" ")}`)
  }
  expect(problem(["--seconds", "0"])).toBe('--seconds must be a number from 1 to 60, got "0"')
  expect(problem(["--count", "2.5"])).toBe('--count must be a whole number from 1 to 10, got "2.5"')
  expect(problem(["--mode", "c"])).toBe('--mode must be one of a, b, got "c"')
  expect(problem(["--only", "x,w"])).toBe('--only: unknown "w" (have: x, y, z)')
  expect(problem(["--size", "big"])).toBe("--size: not a size: big")
  expect(problem(["--nope"])).toContain("--nope")
  expect(problem(["--seconds"])).toContain("--seconds")
})
