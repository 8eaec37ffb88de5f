/** Lets a test await "the next event" (data, close) instead of a fixed sleep. */
export class EventWaiter {
  #waiting: (() => void)[] = []

  /** Wakes everything waiting; each re-checks its condition. */
  notify(): void {
    const waiting = this.#waiting
    this.#waiting = []
    for (const resolve of waiting) resolve()
  }

  /**
   * Resolves once `condition` holds, checking after each event. `failure` says why waiting is
   * pointless (the connection closed, the stream broke), or null to go on waiting.
   */
  async until(condition: () => boolean, failure: () => string | null, what: string): Promise<void> {
    while (!condition()) {
      const why = failure()
      if (why !== null) throw new Error(`${why} while waiting for ${what}`)
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    }
  }
}
