import { describe, expect, test } from "bun:test"
import { BrokerError, BrokerErrorCode } from "../../src/broker/errors.ts"
import { FrameWriter, writeError } from "../../src/protocol/binary/frame-writer.ts"
import { ERROR_NAME_BY_BROKER_CODE, ErrorCode, ProtocolError, protocolErrorOf } from "../../src/protocol/errors.ts"
import { errorReply } from "../../src/protocol/json-reply.ts"
import { toHex } from "../binary-frames.ts"

describe("broker refusals on the wire", () => {
  test("each broker code has the wire name, and so the binary code, clients have always seen", () => {
    const wire = Object.values(BrokerErrorCode).map((code) => {
      const name = ERROR_NAME_BY_BROKER_CODE[code]
      return [code, name, ErrorCode[name]]
    })
    expect(wire).toEqual([
      ["topic_full", "topic_full", 9],
      ["store_full", "store_full", 10],
      ["cursor_busy", "cursor_busy", 11],
      ["invalid_argument", "bad_field", 6],
      ["too_many_cursors", "too_many_cursors", 15],
    ])
  })

  test("protocolErrorOf keeps the broker's text and the refusal as its cause", () => {
    const refusal = new BrokerError(BrokerErrorCode.cursorBusy, 'cursor "lab" is in use by another connection')
    const error = protocolErrorOf(refusal)
    expect(error).toBeInstanceOf(ProtocolError)
    expect({ name: error.errorName, code: error.code, text: error.message, cause: error.cause }).toEqual({
      name: "cursor_busy",
      code: 11,
      text: 'cursor "lab" is in use by another connection',
      cause: refusal,
    })
  })

  test("an invalid argument is a bad_field: an ERROR frame with code 6, a JSON error named bad_field", () => {
    const error = protocolErrorOf(new BrokerError(BrokerErrorCode.invalidArgument, "no"))
    const writer = new FrameWriter()
    writeError(writer, 7, error, false)
    expect(toHex(writer.take())).toBe("0000000a" + "ff00" + "00000007" + "0006" + "6e6f")
    expect(JSON.parse(errorReply(error))).toEqual({ message: "", error: { code: "bad_field", text: "no" } })
  })
})

describe("BrokerError", () => {
  test("has its own name and code, and carries a cause", () => {
    const cause = new Error("disk")
    const error = new BrokerError(BrokerErrorCode.storeFull, "the store is full", { cause })
    expect(error).toBeInstanceOf(Error)
    expect({ name: error.name, code: error.code, message: error.message, cause: error.cause }).toEqual({
      name: "BrokerError",
      code: "store_full",
      message: "the store is full",
      cause,
    })
  })
})
