/**
 * Timeouts of pending waits without a timer per wait. Waits with the same timeout expire in the
 * order they began, so each distinct timeout keeps a FIFO and one timer, armed for its oldest
 * pending wait. A wait answered before its deadline is only marked; marked entries are skipped
 * when the timer fires and dropped in bulk once they are most of a queue. (A setTimeout and a
 * clearTimeout per GET_WAIT were about 5 % of server time at the khz pull load.)
 */

/** A wait as the deadlines see it. */
export interface Timed {
  readonly timeoutMs: number
  /** performance.now() at which it expires. */
  readonly deadline: number
  /** Answered, cancelled or expired: nothing more to do for it. */
  settled: boolean
}

/** Finished entries a queue may carry before it is compacted (and only once they are half of it). */
const COMPACT_AT = 64
/**
 * Queues kept, with their timer, once nothing in them is pending: a client waiting for one
 * message at a time (rtt) would otherwise make a queue and a timer for every wait. A few, so
 * that clients cycling through many timeouts do not leave a timer behind for each.
 */
const IDLE_QUEUES_KEPT = 8

class Queue<T extends Timed> {
  constructor(readonly timeoutMs: number) {}

  items: T[] = []
  head = 0
  /** Settled entries at or after `head`. */
  settled = 0
  timer: Timer | null = null
  /** Nothing pending, kept with its timer for the next wait (see IDLE_QUEUES_KEPT). */
  idle = false

  get pending(): number {
    return this.items.length - this.head - this.settled
  }
}

export class WaitDeadlines<T extends Timed> {
  readonly #queues = new Map<number, Queue<T>>()
  /** Queues with nothing pending that were kept (IDLE_QUEUES_KEPT); their timer drops them. */
  #idleQueues = 0
  readonly #expire: (item: T) => void

  /** `expire` is called once for each wait whose deadline passes before it is settled. */
  constructor(expire: (item: T) => void) {
    this.#expire = expire
  }

  /** Waits with a deadline still ahead. */
  get pending(): number {
    let count = 0
    for (const queue of this.#queues.values()) count += queue.pending
    return count
  }

  /** @internal Queues held (one per distinct timeout in use, plus the few kept idle). */
  get queueCount(): number {
    return this.#queues.size
  }

  add(item: T): void {
    let queue = this.#queues.get(item.timeoutMs)
    if (queue === undefined) {
      queue = new Queue(item.timeoutMs)
      this.#queues.set(item.timeoutMs, queue)
    }
    this.#wake(queue)
    queue.items.push(item)
    if (queue.timer === null) this.#arm(queue, item.deadline)
  }

  /** The wait is over before its deadline: it will not expire. */
  settle(item: T): void {
    if (item.settled) return
    item.settled = true
    const queue = this.#queues.get(item.timeoutMs)
    if (queue === undefined) return
    queue.settled++
    if (queue.pending > 0) this.#compactIfMostlySettled(queue)
    else if (this.#idleQueues < IDLE_QUEUES_KEPT) {
      // Kept with its timer, which drops it if nothing is added before it fires.
      queue.idle = true
      this.#idleQueues++
      this.#compactIfMostlySettled(queue)
    } else this.#drop(queue)
  }

  /** Settles every wait without expiring any (the owner is closing). */
  clear(): void {
    for (const queue of [...this.#queues.values()]) {
      for (let i = queue.head; i < queue.items.length; i++) queue.items[i]!.settled = true
      this.#drop(queue)
    }
  }

  #arm(queue: Queue<T>, deadline: number): void {
    const delay = Math.max(0, Math.ceil(deadline - performance.now()))
    queue.timer = setTimeout(() => this.#fire(queue), delay)
  }

  #fire(queue: Queue<T>): void {
    this.#wake(queue)
    const now = performance.now()
    // Bounded by the queue's length; waits added meanwhile (by an expiry's callback) expire later.
    while (queue.head < queue.items.length) {
      const item = queue.items[queue.head]!
      if (item.settled) {
        queue.head++
        queue.settled--
        continue
      }
      if (item.deadline > now) break
      queue.head++
      item.settled = true
      try {
        this.#expire(item)
      } catch (error) {
        // The other waits must still expire: the timer is armed again below. The error still surfaces.
        queueMicrotask(() => {
          throw error
        })
      }
    }
    // An expiry's callback may have settled the rest (the queue is gone then).
    if (this.#queues.get(queue.timeoutMs) !== queue) return
    if (queue.pending === 0) {
      this.#drop(queue)
      return
    }
    this.#compactIfMostlySettled(queue)
    // The loop stopped at a pending entry: the oldest deadline still ahead.
    this.#arm(queue, queue.items[queue.head]!.deadline)
  }

  /** Keeps only the pending entries, oldest first, once finished ones (before head, or settled) are most of the queue. */
  #compactIfMostlySettled(queue: Queue<T>): void {
    const finished = queue.head + queue.settled
    if (finished < COMPACT_AT || finished * 2 < queue.items.length) return
    const pending: T[] = []
    for (let i = queue.head; i < queue.items.length; i++) if (!queue.items[i]!.settled) pending.push(queue.items[i]!)
    queue.items = pending
    queue.head = 0
    queue.settled = 0
  }

  /** The queue is in use again (a wait added, or its timer fired): no longer counted as kept idle. */
  #wake(queue: Queue<T>): void {
    if (!queue.idle) return
    queue.idle = false
    this.#idleQueues--
  }

  #drop(queue: Queue<T>): void {
    this.#wake(queue)
    if (queue.timer !== null) clearTimeout(queue.timer)
    queue.timer = null
    queue.items = []
    queue.head = 0
    queue.settled = 0
    if (this.#queues.get(queue.timeoutMs) === queue) this.#queues.delete(queue.timeoutMs)
  }
}
