/**
 * Preloaded by `bun test` (bunfig.toml). On a fresh clone the test dependencies are missing:
 * this installs them from bun.lock, then runs the same `bun test` again in a new process (this
 * one's module resolver has already seen that node_modules did not exist) and exits with its
 * status. When they are installed, it does nothing.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dir, "..")
if (!existsSync(join(root, "node_modules", "parse-prometheus-text-format"))) {
  console.error("bun test: installing the test dependencies first (bun install --frozen-lockfile)")
  const install = Bun.spawnSync([process.execPath, "install", "--frozen-lockfile"], { cwd: root, stdout: "inherit", stderr: "inherit" })
  if (install.exitCode !== 0) {
    console.error("bun test: bun install --frozen-lockfile failed; the tests need their dependencies")
    process.exit(1)
  }
  // process.argv here names the test file being loaded, not the command: read the command line.
  const command = existsSync("/proc/self/cmdline")
    ? readFileSync("/proc/self/cmdline", "utf8")
        .split("\0")
        .filter((part) => part !== "")
        .slice(1)
    : ["test"]
  const rerun = Bun.spawnSync([process.execPath, ...command], {
    cwd: process.cwd(),
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  })
  process.exit(rerun.exitCode ?? 1)
}
