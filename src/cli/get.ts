/**
 * `dsmq get TOPIC|PATTERN`: the newest stored message; with --from SEQ the messages after SEQ;
 * with --cursor NAME the next ones for a named cursor (which moves as they are read). --wait
 * waits for a message when there is none. Exit code 1 when nothing was found.
 */
import { CommandLineError } from "../config/values.ts"
import {
  asking,
  CLIENT_HELP,
  connectTo,
  durationOption,
  type Env,
  ExitCode,
  readClientCommand,
  targetOf,
  wholeNumber,
} from "./command-line.ts"
import { formatMessage, type MessageFormat, outputFormatOf, Stdout } from "./output.ts"

export const GET_HELP = `Usage: dsmq get TOPIC|PATTERN [options]

Prints the newest message stored on TOPIC (or on any topic PATTERN matches, like lab/#), or
with --from or --cursor the messages after a point. Exits 1 when there is none.

  --from SEQ       the messages after sequence number SEQ (0: from the oldest kept)
  --cursor NAME    the next messages of the named cursor NAME, which moves past them (a new
                   name starts at the newest message)
  -n, --count N    with --from or --cursor: at most N messages (default 1)
  --wait S         when there is none yet, wait up to S seconds (500ms, 2m...) for one
  -v, --verbose    print the topic, a space, then the message
  --format F       raw (default: the payload as it is) or json: {"topic", "seq", "time",
                   "text"} ("base64" instead of "text" when the payload is not UTF-8)

${CLIENT_HELP}

Examples:
  dsmq get lab/temp
  dsmq get 'lab/#' --from 0 -n 100 -v
  dsmq get jobs --cursor worker-1 --wait 30s
`

/** GETs in flight at once: enough to hide the round trip, few enough to stay small. */
const GET_WINDOW = 256
/** The longest --wait: the protocol's longest GET_WAIT. */
const MAX_WAIT_SECONDS = 3600

export async function runGet(argv: readonly string[], env: Env): Promise<number> {
  const command = readClientCommand(
    argv,
    {
      from: { type: "string" },
      cursor: { type: "string" },
      count: { type: "string", short: "n" },
      wait: { type: "string" },
      verbose: { type: "boolean", short: "v" },
      format: { type: "string" },
    },
    GET_HELP,
  )
  if (command === null) return ExitCode.ok
  const { values, positionals } = command
  const [topic, ...extra] = positionals
  if (topic === undefined) throw new CommandLineError("get needs a TOPIC or PATTERN")
  if (extra.length > 0) throw new CommandLineError(`get reads one TOPIC or PATTERN, got ${positionals.join(" ")}`)
  if (values.from !== undefined && values.cursor !== undefined) throw new CommandLineError("give --from or --cursor, not both")
  const fromSeq = values.from === undefined ? undefined : wholeNumber("--from", values.from, 0, 0)
  const newestOnly = fromSeq === undefined && values.cursor === undefined
  if (newestOnly && values.count !== undefined)
    throw new CommandLineError("-n counts messages after --from or --cursor; without them get prints the newest one")
  const count = wholeNumber("--count", values.count, 1, 1)
  const waitMs = values.wait === undefined ? 0 : durationOption("--wait", values.wait, MAX_WAIT_SECONDS)
  const how: MessageFormat = { format: outputFormatOf(values.format), verbose: values.verbose === true }
  const target = targetOf(values, env)

  await using client = await connectTo(target, {
    // The newest stored message: read from the start, then GET_LATEST skips to the end.
    ...(values.cursor !== undefined ? { cursor: values.cursor } : { from: fromSeq ?? 0 }),
    putTimes: how.format === "json",
  })
  const stdout = new Stdout(() => process.exit(ExitCode.ok))
  const deadline = performance.now() + waitMs
  let printed = 0
  await asking(target, async () => {
    if (newestOnly) {
      const message = (await client.getLatest(topic)) ?? (waitMs > 0 ? await client.getWait(topic, waitMs) : null)
      if (message !== null) {
        await stdout.write(formatMessage(message, how))
        printed++
      }
    } else {
      // GETs pipelined, a window at a time, never more than asked for: with --cursor each one
      // answered moves the cursor, so every message got is printed.
      while (printed < count) {
        const window = Array.from({ length: Math.min(count - printed, GET_WINDOW) }, () => client.get(topic))
        let exhausted = false
        for (const message of await Promise.all(window)) {
          if (message === null) exhausted = true
          else {
            await stdout.write(formatMessage(message, how))
            printed++
          }
        }
        if (!exhausted) continue
        if (printed >= count) break
        const remaining = Math.floor(deadline - performance.now())
        const waited = remaining > 0 ? await client.getWait(topic, remaining) : null
        if (waited === null) break
        await stdout.write(formatMessage(waited, how))
        printed++
      }
    }
  })
  return printed > 0 ? ExitCode.ok : ExitCode.failed
}
