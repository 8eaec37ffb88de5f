import { describe, expect, test } from "bun:test"
import { compilePattern, matchesPattern, PatternError, parsePattern, patternProblem } from "../../src/topic/pattern.ts"
import { MAX_TOPIC_BYTES } from "../../src/topic/topic-name.ts"

describe("which patterns are patterns", () => {
  test("+ and # each fill a whole level, and # comes last", () => {
    const good = ["#", "+", "a/+/b", "a/#", "+/+", "+/#", "a/b", "a", "", "a//b", "/", "+/", "/#", "é/🎉/+"]
    expect(good.map((pattern) => [pattern, patternProblem(pattern)])).toEqual(good.map((pattern) => [pattern, null]))
  })

  test("a misplaced + or # is refused with a text that names the pattern and the rule", () => {
    expect(patternProblem("a#b")).toBe('pattern "a#b": "#" must fill a whole level, as in "a/#"')
    expect(patternProblem("a/#/b")).toBe('pattern "a/#/b": "#" must be the last level (it stands for everything below)')
    expect(patternProblem("#/a")).toBe('pattern "#/a": "#" must be the last level (it stands for everything below)')
    expect(patternProblem("a+")).toBe('pattern "a+": "+" must fill a whole level, as in "a/+/b"')
    expect(patternProblem("+a")).toBe('pattern "+a": "+" must fill a whole level, as in "a/+/b"')
    expect(patternProblem("a/b#")).toBe('pattern "a/b#": "#" must fill a whole level, as in "a/#"')
    expect(patternProblem("##")).toBe('pattern "##": "#" must fill a whole level, as in "a/#"')
    expect(patternProblem("a/++")).toBe('pattern "a/++": "+" must fill a whole level, as in "a/+/b"')
    expect(patternProblem("#/#")).toBe('pattern "#/#": "#" must be the last level (it stands for everything below)')
  })

  test("a pattern obeys the rules of topic names: length, control characters, lone surrogates", () => {
    expect(patternProblem("x".repeat(MAX_TOPIC_BYTES))).toBeNull()
    expect(patternProblem("x".repeat(MAX_TOPIC_BYTES + 1))).toBe(
      `pattern "${"x".repeat(MAX_TOPIC_BYTES + 1)}" is longer than 1024 bytes of UTF-8`,
    )
    expect(patternProblem("a/\n")).toBe('pattern "a/\\n" contains a control character (U+0000 to U+001F, or U+007F)')
    expect(patternProblem("a/\ud800")).toBe('pattern "a/\\ud800" contains a lone surrogate (U+D800 to U+DFFF): it is not valid Unicode')
  })

  test("parsePattern splits once and throws PatternError for a bad pattern", () => {
    expect(parsePattern("lab/+/temp")).toEqual({ text: "lab/+/temp", levels: ["lab", "+", "temp"], andBelow: false })
    expect(parsePattern("lab/#")).toEqual({ text: "lab/#", levels: ["lab"], andBelow: true })
    expect(parsePattern("#")).toEqual({ text: "#", levels: [], andBelow: true })
    expect(parsePattern("")).toEqual({ text: "", levels: [""], andBelow: false })
    expect(() => parsePattern("a/#/b")).toThrow(PatternError)
    expect(() => compilePattern("a#b")).toThrow('pattern "a#b": "#" must fill a whole level')
  })
})

/** [pattern, topic, matches] */
const MATCHES: [string, string, boolean][] = [
  // The cases retention's own compilePattern was tested with, before this module.
  ["lab/temp", "lab/temp", true],
  ["lab/temp", "lab/temp2", false],
  ["lab/#", "lab", true],
  ["lab/#", "lab/a/b", true],
  ["lab/#", "labs/a", false],
  ["lab/+/temp", "lab/1/temp", true],
  ["lab/+/temp", "lab/1/2/temp", false],
  ["+", "anything", true],
  ["+", "a/b", false],
  ["#", "a/b/c", true],
  // Levels counted exactly, prefixes not taken for levels.
  ["lab/temp", "lab", false],
  ["lab/temp", "lab/temp/x", false],
  ["lab/temp", "la", false],
  ["lab/#", "lab/", true],
  ["lab/#", "la", false],
  ["lab/#", "", false],
  ["lab/+", "lab", false],
  ["lab/+", "lab/x", true],
  ["lab/+", "lab/x/y", false],
  ["a/+/c/#", "a/b/c", true],
  ["a/+/c/#", "a/b/c/d/e", true],
  ["a/+/c/#", "a/b/d", false],
  ["+/+", "a/b", true],
  ["+/+", "a", false],
  ["+/#", "a", true],
  ["#", "", true],
  ["#", "/", true],
  // Empty levels are levels: + matches an empty one.
  ["a/+/b", "a//b", true],
  ["+", "", true],
  ["a//b", "a//b", true],
  ["a//b", "a/b", false],
  ["", "", true],
  ["", "/", false],
  ["/+", "/x", true],
  ["+/", "x/", true],
  // Names are compared as they are: no case folding, Unicode levels, topics that hold pattern characters.
  ["Lab/#", "lab/a", false],
  ["é/+", "é/🎉", true],
  ["lab/+", "lab/#", true],
  ["lab/#", "lab/+/x", true],
]

test.each(MATCHES)("%p on %p: %p", (pattern, topic, expected) => {
  expect(compilePattern(pattern)(topic)).toBe(expected)
  expect(matchesPattern(parsePattern(pattern), topic)).toBe(expected)
})

test("compiled matchers are cached: the same pattern gives the same function", () => {
  expect(compilePattern("cache/+/me")).toBe(compilePattern("cache/+/me"))
  expect(compilePattern("cache/+/me")).not.toBe(compilePattern("cache/+/you"))
})
