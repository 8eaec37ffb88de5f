import { describe, expect, test } from "bun:test"
import {
  MAX_TOPIC_BYTES,
  patternCharacterInCursorName,
  patternCharacterInTopic,
  topicProblem,
  utf8Length,
} from "../../src/topic/topic-name.ts"

describe("topicProblem", () => {
  test("names what is wrong: length in UTF-8 bytes, control characters, lone surrogates", () => {
    expect(topicProblem("lab/temp")).toBeNull()
    expect(topicProblem("")).toBeNull()
    expect(topicProblem("é".repeat(MAX_TOPIC_BYTES / 2))).toBeNull()
    expect(topicProblem("é".repeat(MAX_TOPIC_BYTES / 2 + 1))).toBe("topic is longer than 1024 bytes of UTF-8")
    expect(topicProblem("🎉".repeat(MAX_TOPIC_BYTES / 4))).toBeNull()
    expect(topicProblem(`x${"🎉".repeat(MAX_TOPIC_BYTES / 4)}`)).toBe("topic is longer than 1024 bytes of UTF-8")
    expect(topicProblem("a\u0000b")).toBe("topic contains a control character (U+0000 to U+001F, or U+007F)")
    expect(topicProblem("a\u007f")).toBe("topic contains a control character (U+0000 to U+001F, or U+007F)")
    expect(topicProblem("a\udc00")).toBe("topic contains a lone surrogate (U+D800 to U+DFFF): it is not valid Unicode")
  })

  test("reading a topic with + or # is not refused: only writing is", () => {
    expect(topicProblem("lab/#")).toBeNull()
    expect(topicProblem("lab/+/x")).toBeNull()
  })
})

describe("pattern characters in names", () => {
  test("+ or # anywhere in a topic refuses it for writing, with a text that says why", () => {
    expect(patternCharacterInTopic("lab/#")).toBe(
      'topic "lab/#" contains "#": "+" and "#" are pattern characters and cannot be part of a topic name',
    )
    expect(patternCharacterInTopic("lab/+/x")).toBe(
      'topic "lab/+/x" contains "+": "+" and "#" are pattern characters and cannot be part of a topic name',
    )
    for (const topic of ["a#b", "#", "+", "c++", "#tag", "x/y+"]) expect(patternCharacterInTopic(topic)).toContain("pattern characters")
    for (const topic of ["lab/temp", "", "a*b", "a>b", "＃"]) expect(patternCharacterInTopic(topic)).toBeNull()
  })

  test("the same for cursor names", () => {
    expect(patternCharacterInCursorName("worker#1")).toBe(
      'cursor name "worker#1" contains "#": "+" and "#" are pattern characters and cannot be part of a cursor name',
    )
    expect(patternCharacterInCursorName("worker-1")).toBeNull()
  })
})

test("utf8Length counts as TextEncoder does, lone surrogates as U+FFFD", () => {
  const encoder = new TextEncoder()
  for (const text of ["", "abc", "é", "€", "🎉", "a🎉b", "\ud800", "\udc00\ud800", "x\ud83c", "\ud83c\udf89\ud83c"]) {
    expect([text, utf8Length(text)]).toEqual([text, encoder.encode(text).length])
  }
})
