/** Waiting with a deadline, for the bench scripts: every wait is bounded. */

/** `promise`, or a rejection naming `what` once `ms` pass without an answer. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what = "operation"): Promise<T> {
  let timer: Timer | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Resolves when `done()` holds or `deadline` (performance.now() time) passes; checks every few ms. */
export async function until(done: () => boolean, deadline: number): Promise<boolean> {
  while (!done()) {
    if (performance.now() >= deadline) return false
    await Bun.sleep(2)
  }
  return true
}
