import { setDefaultTimeout } from "bun:test"

// Tests wait on events, not on time; this only stops a hung test from hanging the run.
// Generous because a loaded 2-core CI machine can be slow.
setDefaultTimeout(30_000)
