/** Tokens and topic permissions, on every protocol. */
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type AuthConfig, Authenticator, parseAuthConfig } from "../src/auth/auth.ts"
import { connect, type DsmqError } from "../src/client.ts"
import { exposureWarning, parseArguments } from "../src/options.ts"
import { Op } from "../src/protocol/binary/constants.ts"
import { BinaryClient } from "./binary-client.ts"
import { rep, req } from "./binary-frames.ts"
import { DOORS, request, startTestServer, TestClient } from "./helpers.ts"
import { WsClient } from "./ws-helpers.ts"

const ADMIN = "admin-token-0123456789abcdef"
const LAB = "lab-token-0123456789abcdefgh"
const VIEWER = "viewer-token-0123456789abcd"
const WRONG = "not-a-token-0123456789abcde"

const config = (anonymousLegacy: AuthConfig["anonymousLegacy"] = null): AuthConfig => ({
  tokens: [
    { name: "admin", token: ADMIN, read: ["#"], write: ["#"] },
    { name: "lab", token: LAB, read: ["lab/#"], write: ["lab/#"] },
    { name: "viewer", token: VIEWER, read: ["lab/#", "public/+"], write: [] },
  ],
  anonymousLegacy,
})

function secured(anonymousLegacy: AuthConfig["anonymousLegacy"] = null) {
  const logged: string[] = []
  const server = startTestServer({ auth: config(anonymousLegacy), log: (line) => logged.push(line) })
  return Object.assign(server, { logged })
}

describe("Authenticator", () => {
  test("finds the token's principal; patterns decide each topic", () => {
    const auth = new Authenticator(config())
    expect(auth.required).toBe(true)
    expect(auth.authenticate(WRONG)).toBeNull()
    expect(auth.initial).toBeNull()
    const lab = auth.authenticate(LAB)!
    expect([lab.name, lab.canWrite("lab/a"), lab.canWrite("lab"), lab.canRead("office"), lab.canWrite("labs/a")]).toEqual([
      "lab",
      true,
      true,
      false,
      false,
    ])
    const viewer = auth.authenticate(VIEWER)!
    expect([viewer.canRead("public/news"), viewer.canRead("public/a/b"), viewer.canWrite("lab/x")]).toEqual([true, false, false])
  })

  test("without tokens everyone has full access", () => {
    const auth = new Authenticator(null)
    expect(auth.required).toBe(false)
    expect(auth.initial?.canWrite("anything")).toBe(true)
    expect(auth.initialLegacy?.canRead("anything")).toBe(true)
  })

  test("the token file is checked: names, token length, patterns", () => {
    expect(() => parseAuthConfig("{}", false, "f")).toThrow("at least one token")
    expect(() => parseAuthConfig('{"tokens": [{"name": "a", "token": "short"}]}', false, "f")).toThrow("at least 16 characters")
    expect(() => parseAuthConfig(`{"tokens": [{"name": "a", "token": "${LAB}"}, {"name": "a", "token": "${ADMIN}"}]}`, false, "f")).toThrow(
      "used twice",
    )
    expect(() => parseAuthConfig(`{"tokens": [{"name": "a", "token": "${LAB}", "read": "lab/#"}]}`, false, "f")).toThrow(
      "must be a list of topic patterns",
    )
    expect(parseAuthConfig(`{"tokens": [{"name": "a", "token": "${LAB}"}]}`, true, "f").anonymousLegacy).toEqual({
      read: ["#"],
      write: ["#"],
    })
  })

  test("a misplaced + or # in a token's patterns is refused when the file is read, naming the pattern", () => {
    // These were taken as literal names before, and so matched nothing a client could write.
    const file = (read: string[], write: string[] = []) =>
      JSON.stringify({ tokens: [{ name: "lab", token: LAB, read, write }], anonymousLegacy: { read: ["ok/#"], write: ["a/#/b"] } })
    expect(() => parseAuthConfig(file(["lab/#", "a#b"]), false, "f")).toThrow(
      'f: token 1 (lab) read: pattern "a#b": "#" must fill a whole level, as in "a/#"',
    )
    expect(() => parseAuthConfig(file([], ["lab/+x"]), false, "f")).toThrow(
      'f: token 1 (lab) write: pattern "lab/+x": "+" must fill a whole level',
    )
    expect(() => parseAuthConfig(file(["lab/#"]), true, "f")).toThrow(
      'f: anonymousLegacy write: pattern "a/#/b": "#" must be the last level',
    )
    expect(parseAuthConfig(file(["lab/#"]), false, "f").tokens[0]!.read).toEqual(["lab/#"])
    // A configuration built in code is checked as well.
    expect(() => new Authenticator({ tokens: [{ name: "lab", token: LAB, read: ["#/x"], write: [] }], anonymousLegacy: null })).toThrow(
      'lab: pattern "#/x": "#" must be the last level',
    )
  })

  test("a principal's answers follow its patterns however many there are, and repeat the same for a topic", () => {
    const many = Array.from({ length: 5000 }, (_, i) => `site/${i}/+`)
    const auth = new Authenticator({
      tokens: [{ name: "sites", token: LAB, read: [...many, "shared/#"], write: ["site/42/+"] }],
      anonymousLegacy: null,
    })
    const sites = auth.authenticate(LAB)!
    const answers = () => [
      sites.canRead("site/4999/temp"),
      sites.canRead("site/5000/temp"),
      sites.canRead("shared"),
      sites.canWrite("site/42/temp"),
      sites.canWrite("site/43/temp"),
      sites.canRead("site/1/temp/x"),
    ]
    const expected = [true, false, true, true, false, false]
    expect(answers()).toEqual(expected)
    expect(answers()).toEqual(expected)
  })

  test("tokens come from --auth-file or DSMQ_AUTH, never both, never inline", () => {
    const json = JSON.stringify({ tokens: config().tokens })
    const directory = mkdtempSync(join(tmpdir(), "dsmq-auth-"))
    try {
      const file = join(directory, "tokens.json")
      writeFileSync(file, json)
      expect(parseArguments(["--auth-file", file])).toMatchObject({ options: { auth: { tokens: [{ name: "admin" }, {}, {}] } } })
      expect(parseArguments([], { DSMQ_AUTH: json })).toMatchObject({ options: { auth: { anonymousLegacy: null } } })
      expect(() => parseArguments(["--auth-file", file], { DSMQ_AUTH: json })).toThrow("not both")
      expect(() => parseArguments(["--allow-anonymous-legacy"])).toThrow("needs tokens")
      expect(() => parseArguments(["--auth-file", join(directory, "missing.json")])).toThrow("--auth-file")
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  test("a warning for a non-loopback address without tokens", () => {
    expect(exposureWarning("0.0.0.0", null)).toContain("without authentication")
    expect(exposureWarning("192.168.1.5", null)).toContain("WARNING")
    expect(exposureWarning("0.0.0.0", config())).toBeNull()
    expect(exposureWarning("127.0.0.1", null)).toBeNull()
    expect(exposureWarning("::1", null)).toBeNull()
  })
})

describe("binary protocol", () => {
  test("no token, or a wrong one, gets a fatal unauthorized", async () => {
    using server = secured()
    for (const token of [undefined, WRONG]) {
      await using client = await BinaryClient.connect(server.port, { hello: false })
      client.send(req.hello(1, 1, token ?? null), req.get(2, "lab/a"))
      await client.closed
      expect(client.frames).toEqual([rep.error(1, 12, true)])
    }
    await expect(connect({ port: server.port, retries: 0 })).rejects.toMatchObject({ codeName: "unauthorized" })
  })

  test("a token reads and writes only the topics its patterns allow", async () => {
    using server = secured()
    await using lab = await connect({ port: server.port, retries: 0, token: LAB })
    expect(await lab.putAck("lab/temp", "21.5")).toBe(1)
    const refused = async (work: Promise<unknown>) => ((await work.catch((error: unknown) => error)) as DsmqError).codeName
    expect(await refused(lab.putAck("office/temp", "19"))).toBe("forbidden")
    expect(await refused(lab.get("office/temp"))).toBe("forbidden")
    expect(await refused(lab.subscribe("office/temp"))).toBe("forbidden")
    expect(
      await refused(
        lab.putManyAck([
          { topic: "lab/a", payload: "ok" },
          { topic: "office/a", payload: "no" },
        ]),
      ),
    ).toBe("forbidden")
    expect(server.stats().puts).toBe(1) // the mixed batch stored nothing
    await using viewer = await connect({ port: server.port, retries: 0, token: VIEWER })
    expect(await refused(viewer.putAck("lab/temp", "x"))).toBe("forbidden")
    await using admin = await connect({ port: server.port, retries: 0, token: ADMIN })
    expect(await admin.putAck("office/temp", "19")).toBe(2)
  })
})

describe("upstream JSON protocols", () => {
  test("a client must send auth first; without it, or with a wrong token, it is closed", async () => {
    using server = secured()
    {
      await using client = await TestClient.connect(server.port)
      client.send(request({ action: "get", topic: "lab/a" }))
      await client.closed
      expect(client.replies).toEqual([{ message: "", error: { code: "unauthorized", text: expect.any(String) } }])
    }
    await using wrong = await TestClient.connect(server.port)
    wrong.send(request({ action: "auth", token: WRONG }))
    await wrong.closed
    expect(wrong.replies[0]).toMatchObject({ error: { code: "unauthorized" } })
  })

  test("after auth, permissions apply: a forbidden get is answered in place, a forbidden put closes", async () => {
    using server = secured()
    await using client = await TestClient.connect(server.port)
    expect(await client.ask({ action: "auth", token: LAB })).toEqual({ message: "", auth: "lab" })
    client.send(request({ action: "put", topic: "lab/a", message: "m" }))
    expect(await client.ask({ action: "get", topic: "lab/a" })).toMatchObject({ message: "m" })
    expect(await client.ask({ action: "get", topic: "office" })).toMatchObject({ error: { code: "forbidden" } })
    client.send(request({ action: "put", topic: "office", message: "no" }))
    await client.closed
    expect(client.replies.at(-1)).toMatchObject({ error: { code: "forbidden" } })
  })

  test("--allow-anonymous-legacy lets clients without auth in, with the anonymous permissions", async () => {
    using server = secured({ read: ["public/#"], write: [] })
    await using client = await TestClient.connect(server.port)
    expect(await client.ask({ action: "get", topic: "public/news" })).toEqual({ message: "" })
    expect(await client.ask({ action: "get", topic: "lab/a" })).toMatchObject({ error: { code: "forbidden" } })
    // Binary clients still need a token.
    await expect(connect({ port: server.port, retries: 0 })).rejects.toMatchObject({ codeName: "unauthorized" })
  })
})

for (const door of DOORS) {
  describe(door.name, () => {
    describe("WebSocket", () => {
      const url = (server: { httpPort: number | null; port: number }, query = "") => `ws://127.0.0.1:${door.portOf(server)}/${query}`

      test("a wrong token in the upgrade is refused with 401", async () => {
        using server = secured()
        const response = await fetch(`http://127.0.0.1:${door.portOf(server)}/?token=${WRONG}`, {
          headers: {
            Upgrade: "websocket",
            Connection: "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
          },
        })
        expect(response.status).toBe(401)
      })

      test("?token= authenticates an upstream 1.x client; without it, the auth action does", async () => {
        using server = secured()
        await using withQuery = await WsClient.connect(url(server, `?token=${LAB}`))
        withQuery.send(JSON.stringify({ action: "put", topic: "lab/a", message: "hi" }))
        await using reader = await WsClient.connect(url(server))
        expect(JSON.parse(await reader.ask({ action: "auth", token: VIEWER }))).toEqual({ message: "", auth: "viewer" })
        withQuery.send(JSON.stringify({ action: "put", topic: "lab/a", message: "after" }))
        await withQuery.ask({ action: "get", topic: "lab/sync" })
        expect(await reader.ask({ action: "get", topic: "lab/a" })).toBe('{"message": "after"}')
        await using anonymous = await WsClient.connect(url(server))
        anonymous.send(JSON.stringify({ action: "get", topic: "lab/a" }))
        expect((await anonymous.closed).reason).toStartWith("unauthorized")
      })
    })

    describe("HTTP", () => {
      test("401 without a valid token, 403 outside its topics; /healthz stays open", async () => {
        using server = secured()
        const base = `http://127.0.0.1:${door.portOf(server)}`
        const bearer = (token: string) => ({ Authorization: `Bearer ${token}` })
        const missing = await fetch(`${base}/topics/lab%2Fa`)
        expect([missing.status, missing.headers.get("www-authenticate")]).toEqual([401, "Bearer"])
        expect((await fetch(`${base}/topics/lab%2Fa`, { headers: bearer(WRONG) })).status).toBe(401)
        expect((await fetch(`${base}/metrics`)).status).toBe(401)
        expect((await fetch(`${base}/healthz`)).status).toBe(200)
        expect((await fetch(`${base}/topics/lab%2Fa`, { method: "POST", body: "x", headers: bearer(LAB) })).status).toBe(201)
        const forbidden = await fetch(`${base}/topics/office`, { method: "POST", body: "x", headers: bearer(LAB) })
        expect([forbidden.status, ((await forbidden.json()) as { error: { code: string } }).error.code]).toEqual([403, "forbidden"])
        expect((await fetch(`${base}/topics/office?after=0`, { headers: bearer(VIEWER) })).status).toBe(403)
        const read = await fetch(`${base}/topics/lab%2Fa?after=0&token=${VIEWER}`)
        expect([read.status, await read.text()]).toEqual([200, "x"])
        expect((await fetch(`${base}/metrics`, { headers: bearer(VIEWER) })).status).toBe(200)
      })

      test("tokens never appear in the server's log", async () => {
        using server = secured()
        const base = `http://127.0.0.1:${door.portOf(server)}`
        await fetch(`${base}/topics/a`, { headers: { Authorization: `Bearer ${WRONG}` } })
        await using client = await TestClient.connect(server.port)
        client.send(request({ action: "auth", token: WRONG }))
        await client.closed
        await using binary = await BinaryClient.connect(server.port, { hello: false })
        binary.send(req.hello(1, 1, WRONG))
        await binary.closed
        expect(binary.frames[0]).toMatchObject({ op: Op.error, code: 12 })
        expect(server.logged.length).toBeGreaterThan(0)
        expect(server.logged.filter((line) => line.includes(WRONG) || line.includes(LAB))).toEqual([])
        expect(server.stats().errors.unauthorized).toBe(3)
      })
    })
  })
}
