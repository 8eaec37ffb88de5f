/** The package version, read from package.json at build time (so a compiled binary knows it too). */
import packageJson from "../../package.json" with { type: "json" }

export const VERSION: string = packageJson.version
