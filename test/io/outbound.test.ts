/**
 * The output queue of one socket: every byte goes out once and in order, small pieces are
 * joined into writes of at most WRITE_COALESCE_BYTES, and nothing queued is copied twice
 * however slowly the kernel takes it.
 */
import { describe, expect, test } from "bun:test"
import type { Socket } from "bun"
import { Outbound, WRITE_COALESCE_BYTES } from "../../src/io/outbound.ts"

/** A socket whose kernel takes at most `room` bytes a write (Infinity: all), recording what it was offered. */
class FakeSocket {
  readonly offered: Uint8Array[] = []
  readonly taken: number[] = []
  room = Number.POSITIVE_INFINITY
  closed = false
  terminated = false

  write(all: Uint8Array, offset = 0, length = all.length - offset): number {
    if (this.closed) return -1
    const bytes = offset === 0 && length === all.length ? all : all.subarray(offset, offset + length)
    this.offered.push(bytes)
    const took = Math.min(bytes.length, this.room)
    for (let i = 0; i < took; i++) this.taken.push(bytes[i]!)
    return took
  }

  terminate(): void {
    this.terminated = true
  }
}

function outboundOn(socket: FakeSocket): Outbound {
  return new Outbound(socket as unknown as Socket<unknown>)
}

/** `count` bytes numbered from `first`, mod 251 (a prime, so pieces do not line up with it). */
function piece(count: number, first: number): Uint8Array {
  return Uint8Array.from({ length: count }, (_, i) => (first + i) % 251)
}

describe("Outbound", () => {
  test("small pieces queued behind a write are joined, up to WRITE_COALESCE_BYTES a write", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    socket.room = 10
    outbound.send(piece(100, 0)) // the kernel takes 10: the rest waits for `drain`
    for (let i = 0; i < 100; i++) outbound.send(piece(4096, 0))
    expect(outbound.queuedBytes).toBe(90 + 100 * 4096)
    socket.room = Number.POSITIVE_INFINITY
    outbound.writeQueued()
    // The rest of the first write alone, then the small pieces in as few writes as the cap allows.
    expect(socket.offered.map((bytes) => bytes.length)).toEqual([100, 90, WRITE_COALESCE_BYTES, 100 * 4096 - WRITE_COALESCE_BYTES])
    expect(outbound.isIdle).toBe(true)
    expect(outbound.queuedBytes).toBe(0)
  })

  test("a piece as large as a write goes out as it is, without a copy", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    const small = piece(10, 0)
    const large = piece(WRITE_COALESCE_BYTES * 2, 10)
    socket.room = 0
    outbound.send(small)
    outbound.send(large)
    socket.room = Number.POSITIVE_INFINITY
    outbound.writeQueued()
    expect(socket.offered.at(-1)).toBe(large)
    expect(outbound.joinedBytes).toBe(0)
  })

  test("a reader that takes a little at a time gets every byte once, in order, and no byte is joined twice", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    const pieces: Uint8Array[] = []
    let next = 0
    for (let i = 0; i < 600; i++) {
      // Mostly small replies, and now and then a large one.
      const size = i % 50 === 0 ? 300_000 : 1 + ((i * 7919) % 3000)
      pieces.push(piece(size, next))
      next += size
    }
    socket.room = 1000
    for (const bytes of pieces) outbound.send(bytes)
    // Each `drain`, the kernel takes a little.
    for (let drains = 0; drains < 100_000 && !outbound.isIdle; drains++) outbound.writeQueued()
    expect(outbound.isIdle).toBe(true)
    const total = pieces.reduce((sum, bytes) => sum + bytes.length, 0)
    expect(socket.taken.length).toBe(total)
    let wrong = 0
    for (let i = 0; i < total; i++) if (socket.taken[i] !== i % 251) wrong++
    expect(wrong).toBe(0)
    expect(outbound.joinedBytes).toBeLessThanOrEqual(total)
  })

  test("lent bytes go straight to an idle socket: only the lent length, from the lender's memory, nothing kept", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    const memory = piece(64, 0)
    outbound.sendLent(memory, 40)
    expect(socket.taken).toEqual([...piece(40, 0)])
    expect(socket.offered[0]!.buffer).toBe(memory.buffer)
    expect(outbound.isIdle).toBe(true)
    expect(outbound.queuedBytes).toBe(0)
  })

  test("what the kernel does not take of lent bytes is copied: reusing the memory at once changes nothing sent", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    socket.room = 10
    const memory = piece(100, 0)
    outbound.sendLent(memory, 100)
    expect(outbound.queuedBytes).toBe(90)
    memory.fill(0) // the lender writes its next replies here
    socket.room = Number.POSITIVE_INFINITY
    outbound.writeQueued()
    expect(socket.taken).toEqual([...piece(100, 0)])
  })

  test("lent bytes behind a queue wait as a copy, in order", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    socket.room = 5
    outbound.send(piece(20, 0))
    const memory = piece(30, 20)
    outbound.sendLent(memory, 30)
    expect(socket.offered.length).toBe(1)
    memory.fill(0)
    socket.room = Number.POSITIVE_INFINITY
    outbound.writeQueued()
    expect(socket.taken).toEqual([...piece(50, 0)])
  })

  test("lent bytes to a socket that will never take them (write returns -1) close it", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    socket.closed = true
    outbound.sendLent(piece(10, 0), 10)
    expect(socket.terminated).toBe(true)
    expect(outbound.queuedBytes).toBe(0)
  })

  test("a socket that will never take its bytes (write returns -1) is closed and its queue dropped", () => {
    const socket = new FakeSocket()
    const outbound = outboundOn(socket)
    socket.room = 0
    outbound.send(piece(10, 0))
    outbound.send(piece(10, 0))
    socket.closed = true
    outbound.writeQueued()
    expect(socket.terminated).toBe(true)
    expect([outbound.isIdle, outbound.queuedBytes]).toEqual([true, 0])
  })
})
