import { describe, expect, test } from "bun:test"
import { DEFAULT_WAIT_SECONDS, parseJsonRequest } from "../../src/protocol/json-request.ts"
import { MAX_TOPIC_BYTES } from "../../src/topic/topic-name.ts"

const parse = (text: string) => parseJsonRequest(new TextEncoder().encode(text))
const rejection = (text: string) => {
  const result = parse(text)
  if (result.action !== "rejected") throw new Error(`expected a rejection, got ${JSON.stringify(result)}`)
  return { code: result.error.errorName, expectsReply: result.expectsReply, text: result.error.message }
}

describe("parseJsonRequest", () => {
  test("reads each action", () => {
    expect(parse('{"action": "put", "topic": "greetings", "message": "Hello!"}')).toEqual({
      action: "put",
      topic: "greetings",
      message: "Hello!",
      ack: false,
    })
    expect(parse('{"action":"put","topic":"t","message":"","ack":true}')).toEqual({
      action: "put",
      topic: "t",
      message: "",
      ack: true,
    })
    expect(parse('{"action": "get", "topic": "greetings"}')).toEqual({ action: "get", topic: "greetings" })
    expect(parse('{"action": "get_latest", "topic": ""}')).toEqual({ action: "get_latest", topic: "" })
    expect(parse('{"action": "get_wait", "topic": "t", "timeout": 0.25}')).toEqual({
      action: "get_wait",
      topic: "t",
      timeoutMs: 250,
    })
    expect(parse('{"action": "get_wait", "topic": "t"}')).toEqual({
      action: "get_wait",
      topic: "t",
      timeoutMs: DEFAULT_WAIT_SECONDS * 1000,
    })
    expect(parse('{"action": "shutdown", "topic": ""}')).toEqual({ action: "shutdown" })
  })

  test("ignores fields it does not know", () => {
    expect(parse('{"action":"get","topic":"t","client":"v9","id":3}')).toEqual({ action: "get", topic: "t" })
  })

  test("errors that can be answered in place: the client waits for a reply", () => {
    expect(rejection('{"action":"get"}')).toMatchObject({ code: "bad_field", expectsReply: true })
    expect(rejection('{"action":"get_latest","topic":7}')).toMatchObject({ code: "bad_field", expectsReply: true })
    expect(rejection('{"action":"get_wait","topic":"t","timeout":"soon"}')).toMatchObject({
      code: "bad_field",
      expectsReply: true,
    })
    expect(rejection('{"action":"get_wait","topic":"t","timeout":-1}').code).toBe("bad_field")
    expect(rejection('{"action":"put","topic":"t","message":5,"ack":true}')).toMatchObject({
      code: "bad_field",
      expectsReply: true,
    })
    expect(rejection(`{"action":"get","topic":"${"t".repeat(MAX_TOPIC_BYTES + 1)}"}`).code).toBe("bad_field")
    expect(rejection(`{"action":"get","topic":"${"é".repeat(MAX_TOPIC_BYTES / 2 + 1)}"}`).code).toBe("bad_field")
    expect(parse(`{"action":"get","topic":"${"é".repeat(MAX_TOPIC_BYTES / 2)}"}`).action).toBe("get")
  })

  test("errors the client does not expect an answer to", () => {
    expect(rejection('{"action":"put","topic":"t"}')).toEqual({
      code: "bad_field",
      expectsReply: false,
      text: "'message' must be a string, got nothing",
    })
    expect(rejection('{"action":"put","topic":"t","message":{"a":1}}').text).toContain("got an object")
    expect(rejection('{"action":"put","message":"m"}')).toMatchObject({ code: "bad_field", expectsReply: false })
    expect(rejection('{"action":"put","topic":"t","message":"m","ack":"yes"}').code).toBe("bad_field")
    expect(rejection('{"action":"publish","topic":"t"}')).toMatchObject({ code: "unknown_action", expectsReply: false })
    expect(rejection('{"topic":"t"}')).toMatchObject({ code: "unknown_action", expectsReply: false })
    expect(rejection("{not json}")).toMatchObject({ code: "bad_json", expectsReply: false })
    expect(rejection("[1]").code).toBe("not_an_object")
  })

  test("refuses bytes that are not UTF-8", () => {
    const result = parseJsonRequest(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))
    expect(result).toMatchObject({ action: "rejected" })
    if (result.action === "rejected") expect(result.error.message).toBe("request is not valid UTF-8")
  })
})
