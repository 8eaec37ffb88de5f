/** The broker's refusals as each protocol reports them: the same name and text, in each wire's form. */
import { expect, test } from "bun:test"
import { DEFAULT_RETENTION } from "../../src/broker/retention.ts"
import { connect, DsmqError } from "../../src/client.ts"
import { startTestServer, TestClient } from "../helpers.ts"

test("store_full: a JSON error, a non-fatal ERROR frame with code 10, HTTP 507; all with the broker's text", async () => {
  // 100 bytes of each message count against the cap (its row and index): one 450-byte message fits, a second does not.
  using server = startTestServer({
    retention: { ...DEFAULT_RETENTION, maxStoreBytes: 1000, defaults: { ...DEFAULT_RETENTION.defaults, policy: "reject" } },
  })
  const payload = "p".repeat(450)
  const text = `the store is at its cap of 1000 bytes and topic "t"'s policy is reject`
  await using json = await TestClient.connect(server.port)
  expect(await json.ask({ action: "put", topic: "t", message: payload, ack: true })).toEqual({ message: "", seq: 1 })
  expect(await json.ask({ action: "put", topic: "t", message: payload, ack: true })).toEqual({
    message: "",
    error: { code: "store_full", text },
  })

  await using binary = await connect({ port: server.port, retries: 0 })
  const refused = await binary.putAck("t", payload).catch((error: unknown) => error)
  expect(refused).toBeInstanceOf(DsmqError)
  const { code, codeName, fatal, message } = refused as DsmqError
  expect({ code, codeName, fatal, message }).toEqual({ code: 10, codeName: "store_full", fatal: false, message: text })
  await expect(binary.ping()).resolves.toBeUndefined() // the connection goes on

  const response = await fetch(`http://127.0.0.1:${server.httpPort}/topics/t`, { method: "POST", body: payload })
  expect({ status: response.status, body: await response.json() }).toEqual({ status: 507, body: { error: { code: "store_full", text } } })
  expect(server.stats().errors.store_full).toBe(3)
})

test("cursor_busy over HTTP is 409 while a binary connection holds the cursor, and 204 once it is free", async () => {
  using server = startTestServer()
  const url = `http://127.0.0.1:${server.httpPort}/topics/t?cursor=lab`
  {
    await using holder = await connect({ port: server.port, retries: 0, cursor: "lab" })
    await holder.ping()
    const busy = await fetch(url)
    expect({ status: busy.status, body: await busy.json() }).toEqual({
      status: 409,
      body: { error: { code: "cursor_busy", text: 'cursor "lab" is in use by another connection' } },
    })
  }
  // The holder's close reaches the server on a later turn: wait for it by asking until the answer changes, boundedly.
  let status = 409
  for (let attempt = 0; attempt < 1000 && status === 409; attempt++) status = (await fetch(url)).status
  expect(status).toBe(204)
  expect(server.stats().errors.cursor_busy).toBeGreaterThanOrEqual(1)
})
