/** Topic names and NATS subjects: one subject per topic, and back unchanged. */
import { describe, expect, test } from "bun:test"
import { seededRandom } from "../../bench/common.ts"
import { checkPrefix, patternToSubjects, SubjectError, subjectToTopic, topicToSubject } from "../../src/bridge/subjects.ts"

describe("topics and subjects", () => {
  test.each([
    ["lab/temp", "", "lab.temp"],
    ["lab/temp", "site1", "site1.lab.temp"],
    ["a.b/c d", "", "a~2Eb.c~20d"],
    ["~home", "", "~7Ehome"],
    ["a//b", "", "a.~.b"],
    ["/lead", "", "~.lead"],
    ["wild*/card>", "", "wild~2A.card~3E"],
    ["café/é", "", "café.é"],
  ])("%p under prefix %p is %p, and back", (topic, prefix, subject) => {
    expect(topicToSubject(topic, prefix)).toBe(subject)
    expect(subjectToTopic(subject, prefix)).toBe(topic)
  })

  test("every topic comes back from its subject unchanged (random names, fixed seed)", () => {
    const random = seededRandom(7)
    const alphabet = ["a", "b", "/", ".", "~", "*", ">", " ", "\t", "é", "€", "~2E", "\u0000", "😀"]
    for (let i = 0; i < 2000; i++) {
      const length = 1 + Math.floor(random() * 12)
      const topic = Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join("")
      const subject = topicToSubject(topic, "p")
      // A valid NATS subject: non-empty tokens, no wildcards, no whitespace.
      expect(subject.split(".").every((token) => token !== "" && !/[*>\s]/.test(token))).toBe(true)
      expect(subjectToTopic(subject, "p")).toBe(topic)
    }
  })

  test("a subject outside the prefix is no topic", () => {
    expect(subjectToTopic("other.lab.temp", "site1")).toBeNull()
    expect(subjectToTopic("site1x.temp", "site1")).toBeNull()
  })

  test("patterns: + is *, a final # is > and also the parent itself", () => {
    expect(patternToSubjects("lab/+/temp", "")).toEqual(["lab.*.temp"])
    expect(patternToSubjects("lab/#", "site1")).toEqual(["site1.lab.>", "site1.lab"])
    expect(patternToSubjects("#", "")).toEqual([">"])
    expect(patternToSubjects("lab/temp", "")).toEqual(["lab.temp"])
  })

  test("a prefix must be a valid subject", () => {
    expect(checkPrefix("site1.lab")).toBe("site1.lab")
    for (const bad of ["a..b", ".a", "a b", "a.*", "a.>"]) expect(() => checkPrefix(bad)).toThrow(SubjectError)
  })
})
