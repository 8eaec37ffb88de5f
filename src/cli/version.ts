import { VERSION } from "../config/version.ts"

export { VERSION }

export function versionLine(): string {
  return `dsmq ${VERSION} (Bun ${Bun.version})`
}
