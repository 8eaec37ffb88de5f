import { expect, test } from "bun:test"
import { detectProtocol } from "../../src/protocol/detect.ts"

const detect = (text: string) => detectProtocol(new TextEncoder().encode(text))

test("a connection that starts with the length header speaks generation 2", () => {
  expect(detect('{"msg_length": 1000002}{}')).toBe("json-header")
  expect(detect('{"msg_length": ')).toBe("json-header")
})

test("any other start is a generation 1 JSON stream", () => {
  expect(detect('{"action": "get"')).toBe("json-stream")
  expect(detect(' {"msg_length": 1000002}')).toBe("json-stream")
  expect(detect("\n")).toBe("json-stream")
  expect(detect('{"msg_lengths')).toBe("json-stream")
  expect(detect("get / HTTP/1.1")).toBe("json-stream")
  expect(detect("GETTING_TOO_LONG_A_METHOD ")).toBe("json-stream")
})

test("stays undecided while the first bytes could be either", () => {
  expect(detect("")).toBeNull()
  expect(detect("{")).toBeNull()
  expect(detect('{"msg_len')).toBeNull()
})

test("a method token in capitals and a space is HTTP", () => {
  expect(detect("GET / HTTP/1.1\r\n")).toBe("http")
  expect(detect("POST ")).toBe("http")
  expect(detect("OPTIONS * HTTP/1.1")).toBe("http")
  // Capitals so far could still become a method.
  expect(detect("GE")).toBeNull()
  expect(detect(" GET")).toBe("json-stream")
})
