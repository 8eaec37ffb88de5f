/**
 * Entry point: `bun run src/server.ts [host] [port] [options]`, the same as `dsmq serve`
 * (src/cli/serve.ts). Prints one line with the address once listening, and stops cleanly
 * (exit code 0) on SIGINT, SIGTERM or an allowed `shutdown` request.
 */
import { runServe } from "./cli/serve.ts"

runServe(process.argv.slice(2), process.env)
