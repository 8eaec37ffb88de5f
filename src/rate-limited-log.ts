/**
 * A log that writes at most `perSecond` lines each second and then says how many it dropped,
 * so a client that misbehaves in a loop cannot flood the server's stderr.
 */
export function rateLimitedLog(write: (line: string) => void, perSecond = 20, now: () => number = Date.now): (line: string) => void {
  let windowStart = 0
  let written = 0
  let dropped = 0
  return (line) => {
    const time = now()
    if (time - windowStart >= 1000) {
      if (dropped > 0) write(`(${dropped} more log lines dropped in the last second)`)
      windowStart = time
      written = 0
      dropped = 0
    }
    if (written < perSecond) {
      written++
      write(line)
    } else {
      dropped++
    }
  }
}
