/** A throwaway self-signed certificate for 127.0.0.1 (and localhost), made with openssl for one test run. */
import { join } from "node:path"

export interface CertificateFiles {
  readonly certFile: string
  readonly keyFile: string
}

/** Writes cert.pem and key.pem (EC P-256, valid one day) into `directory`. */
export function makeSelfSignedCertificate(directory: string): CertificateFiles {
  const [certFile, keyFile] = [join(directory, "cert.pem"), join(directory, "key.pem")]
  const made = Bun.spawnSync(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ].concat(["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]),
    { stderr: "pipe" },
  )
  if (made.exitCode !== 0) throw new Error(`openssl failed: ${made.stderr.toString()}`)
  return { certFile, keyFile }
}
