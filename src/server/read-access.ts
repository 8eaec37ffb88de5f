/**
 * Whether a principal may read a name, and, for a pattern, which of its topics: a pattern is
 * allowed when some topic it matches is readable (`#` under a token that reads `lab/#`), and
 * then delivers only the readable ones.
 */
import type { Principal } from "../auth/auth.ts"
import type { TopicFilter } from "../broker/broker.ts"
import { isPattern } from "../topic/pattern.ts"

export interface ReadAccess {
  readonly allowed: boolean
  /** For a pattern: the topics it may deliver (undefined: an exact topic, checked as a whole). */
  readonly readable: TopicFilter | undefined
}

export function readAccess(principal: Principal, name: string): ReadAccess {
  if (!isPattern(name)) return { allowed: principal.canRead(name), readable: undefined }
  return { allowed: principal.mayReadSomeOf(name), readable: (topic) => principal.canRead(topic) }
}
