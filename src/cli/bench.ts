/** `dsmq bench [...]`: the benchmark suite of a checkout (bench/run.ts), the same as `bun run bench`. */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { CommandFailure } from "./command-line.ts"

/** Where bench/run.ts is when dsmq runs from a checkout or an install of the package. */
const SUITE = join(import.meta.dir, "..", "..", "bench", "run.ts")

export async function runBench(argv: readonly string[]): Promise<number> {
  if (!existsSync(SUITE)) {
    throw new CommandFailure("the benchmark suite is not part of this dsmq (a single binary has no bench/): run dsmq bench from a checkout")
  }
  // The suite's own --help, options and exit code; Ctrl-C reaches it as it reaches this process.
  const child = Bun.spawn([process.execPath, "run", SUITE, ...argv], { stdio: ["inherit", "inherit", "inherit"] })
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal))
  return await child.exited
}
