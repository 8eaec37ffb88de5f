import type { BinaryRequest } from "../../../src/protocol/binary/request.ts"
import { entry, req } from "../../binary-frames.ts"

/** One request of every opcode, with payloads holding bytes that look like frame headers. */
export const REQUESTS: BinaryRequest[] = [
  req.hello(1),
  req.put(2, "t", "hi", true),
  req.put(3, "ünïcödé ✓ 🎉", new Uint8Array([0, 0, 0, 6, 0x80, 0, 0, 0, 0, 0])),
  req.put(4, "empty", ""),
  req.putMany(5, [entry("a", "1"), entry("b", new Uint8Array([0xff, 0])), entry("a", "")], true),
  req.putMany(6, []),
  req.get(7, "t"),
  req.getLatest(8, "t"),
  req.getWait(9, "t", 1500),
  req.subscribe(10, "t"),
  req.unsubscribe(11, "t"),
  req.ping(12, "ab"),
  req.ping(13),
  req.stats(0xfffffffe),
]
