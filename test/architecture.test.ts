/**
 * The layers of src/ point one way. Each folder of src/ is a node (the files directly in src/
 * form one more node, "src"); every import or re-export, type-only ones included, is an edge.
 * The graph must have no cycle, and the lower layers must not reach up.
 */
import { describe, expect, test } from "bun:test"
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"

const SRC = resolve(import.meta.dir, "../src")
const IMPORT = /^\s*(?:import|export)\s(?:[^"']*?\sfrom\s)?["']([^"']+)["']/gm

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith(".ts") ? [path] : []
  })
}

/** The files that only start a command: above every layer, importing the CLI. */
const ENTRY_POINTS = new Set(["server.ts"])

/** The node a file belongs to: its first folder under src/, or "src" for files directly in it. */
function nodeOf(file: string): string {
  const parts = relative(SRC, file).split("/")
  if (parts.length === 1) return ENTRY_POINTS.has(parts[0]!) ? "entry" : "src"
  return parts[0]!
}

/** Folder -> the folders it imports from, with one example file per edge. */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>()
  for (const file of sourceFiles(SRC)) {
    const from = nodeOf(file)
    const edges = graph.get(from) ?? new Map<string, string>()
    graph.set(from, edges)
    for (const match of readFileSync(file, "utf8").matchAll(IMPORT)) {
      const specifier = match[1]!
      if (!specifier.startsWith(".")) continue
      const target = resolve(dirname(file), specifier)
      if (!target.startsWith(SRC)) continue
      const to = nodeOf(target)
      if (to !== from && !edges.has(to)) edges.set(to, `${relative(SRC, file)} -> ${specifier}`)
    }
  }
  return graph
}

/** Every cycle's path, found by depth-first search (empty when the graph is acyclic). */
function cycles(graph: Map<string, Map<string, string>>): string[] {
  const found: string[] = []
  const state = new Map<string, "visiting" | "done">()
  const visit = (node: string, path: string[]): void => {
    if (state.get(node) === "done") return
    if (state.get(node) === "visiting") {
      found.push([...path.slice(path.indexOf(node)), node].join(" -> "))
      return
    }
    state.set(node, "visiting")
    for (const next of graph.get(node)?.keys() ?? []) visit(next, [...path, node])
    state.set(node, "done")
  }
  for (const node of graph.keys()) visit(node, [])
  return found
}

/** The folders each folder may not import from, directly: the layers below never reach up. */
const FORBIDDEN: Record<string, readonly string[]> = {
  topic: ["protocol", "store", "broker", "auth", "server", "http", "io", "net", "src"],
  store: ["protocol", "broker", "auth", "server", "http", "io", "net", "src"],
  broker: ["protocol", "auth", "server", "http", "io", "net", "src"],
  // protocol/errors.ts maps the broker's error codes to wire names: it knows broker/errors.ts.
  protocol: ["store", "auth", "server", "http", "io", "net", "src"],
  io: ["protocol", "store", "broker", "auth", "server", "http", "net", "src"],
  auth: ["protocol", "store", "broker", "server", "http", "io", "net", "src"],
  // The bridge knows the broker and topics, and its NATS client; the server and config know it.
  bridge: ["protocol", "auth", "server", "http", "io", "net", "config", "src"],
  // Reading configuration knows the shapes it fills (auth, retention, topic patterns), not the server.
  config: ["protocol", "store", "server", "http", "io", "net", "src"],
  // The library never reaches up to the command line that drives it.
  src: ["cli", "entry"],
}

describe("the folders of src/", () => {
  const graph = folderGraph()

  test("import one another without a cycle", () => {
    expect(cycles(graph)).toEqual([])
  })

  test.each(Object.entries(FORBIDDEN))("%s imports nothing from the layers above it", (folder, forbidden) => {
    const edges = graph.get(folder) ?? new Map<string, string>()
    expect([...edges].filter(([to]) => forbidden.includes(to)).map(([, example]) => example)).toEqual([])
  })

  test("the checker sees the real graph (a known edge is found)", () => {
    expect(graph.get("broker")?.has("store")).toBe(true)
  })
})

test("the connection file stays readable in one sitting (at most 300 lines)", () => {
  const lines = readFileSync(join(import.meta.dir, "..", "src", "server", "connection.ts"), "utf8").split("\n").length
  expect(lines).toBeLessThanOrEqual(300)
})
