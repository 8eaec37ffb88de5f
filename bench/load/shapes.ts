export const KHZ_WRITERS = 10

export const KHZ_READERS = 10

export const KHZ_RATE_HZ = 1000

/** khz writers are spread over this many send times per millisecond (2 writers each). */
export const KHZ_SLOTS = 5

export const FANOUT_READERS = 100

export const FANOUT_RATE_HZ = 1000

export const MAX_BATCH = 100

/** Requests a pull reader keeps in flight per topic when there is a backlog (max). */
export const MAX_PULL_WINDOW = 1000

/** Pull readers' wait timeout: long enough never to expire while messages flow. */
export const WAIT_TIMEOUT_MS = 5000

/** An rtt round trip that takes longer than this counts as lost; the next one starts. */
export const RTT_LOSS_MS = 1000

/**
 * rtt runs in two passes, A-B-B-A (echo, relay, the protocols, then the same backwards), each a
 * fresh process with half the round trips, merged per protocol: round-trip times drift by tens of
 * percent over seconds on a shared VM, and this order cancels a steady drift out of the ratios.
 */
export const RTT_PASSES = 2
