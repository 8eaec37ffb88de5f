import { expect, test } from "bun:test"
import { join } from "node:path"
import { eventually, startTestServer, TestClient } from "../helpers.ts"

test("a client flooding requests from another process does not keep others waiting for its whole flood", async () => {
  using server = startTestServer()
  await using other = await TestClient.connect(server.port)
  const count = 300_000
  const flooder = Bun.spawn(["bun", "run", join(import.meta.dir, "..", "flood-fixture.ts"), String(server.port), String(count)], {
    stdout: "ignore",
    stderr: "inherit",
  })
  try {
    await eventually(() => server.stats().puts > 0, "the flood to start")
    const samples: number[] = []
    for (let i = 0; i < 5; i++) {
      const before = server.stats().puts
      await other.ask({ action: "get", topic: "quiet" })
      samples.push(server.stats().puts - before)
    }
    // Each answer comes after a chunk or two of the flood (Bun reads up to about a megabyte at
    // a time, ~20,000 of these puts), not after most of it (over 100,000 without the yield).
    expect(Math.max(...samples)).toBeLessThan(50_000)
  } finally {
    flooder.kill()
    await flooder.exited
  }
}, 60_000)
