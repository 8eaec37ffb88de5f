/**
 * The token, for a broker with tokens: kept in this tab's sessionStorage only, sent as a bearer
 * header on every request, never put in a URL.
 */
const TOKEN_KEY = "dsmq-dashboard-token"

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY)
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY)
  else sessionStorage.setItem(TOKEN_KEY, token)
}

export function authorized(init: RequestInit = {}): RequestInit {
  const token = storedToken()
  const headers = new Headers(init.headers)
  if (token !== null) headers.set("Authorization", `Bearer ${token}`)
  return { ...init, headers }
}

/** What the server says of the page's credentials. */
export type Access = "open" | "needs-token" | "unreachable"

/** Asks /stats whether the page may read (with the stored token, if any). */
export async function checkAccess(): Promise<Access> {
  try {
    const response = await fetch("/stats", authorized())
    await response.body?.cancel()
    if (response.status === 401) return "needs-token"
    return response.ok ? "open" : "unreachable"
  } catch {
    return "unreachable"
  }
}
