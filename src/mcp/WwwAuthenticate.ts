/**
 * The `Bearer` challenge of a `WWW-Authenticate` header, as an MCP server
 * (a protected resource) sends it with a 401 or a 403: where its protected
 * resource metadata lives (`resource_metadata`, RFC 9728 §5.1), which
 * scopes it wants (`scope`, RFC 6750 §3), and why it refused (`error`:
 * `invalid_token`, `insufficient_scope`).
 *
 * Parsing is pure and lenient: unknown parameters are ignored, several
 * challenges in one header are told apart, and a header without a Bearer
 * challenge yields none.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 * @see https://www.rfc-editor.org/rfc/rfc9728#section-5.1
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-11.6.1
 */
import { Option } from "effect"

/** The parameters of a Bearer challenge that a client acts on. */
export interface BearerChallenge {
  readonly resourceMetadata: Option.Option<string>
  readonly scopes: Option.Option<ReadonlyArray<string>>
  readonly error: Option.Option<string>
  readonly errorDescription: Option.Option<string>
  /** Every parameter, lower-cased names. */
  readonly params: ReadonlyMap<string, string>
}

const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/
const whitespace = /^[ \t,]*/

/** Splits a header into `[scheme, params]` challenges (RFC 9110 §11.6.1 grammar, quoted strings honoured). */
export const challenges = (header: string): ReadonlyArray<{ readonly scheme: string; readonly params: ReadonlyMap<string, string> }> => {
  const out: Array<{ scheme: string; params: Map<string, string> }> = []
  let rest = header
  while (rest.length > 0) {
    rest = rest.replace(whitespace, "")
    const name = token.exec(rest)?.[0]
    if (name === undefined) break
    rest = rest.slice(name.length)
    const afterSpace = rest.replace(/^[ \t]*/, "")
    if (afterSpace.startsWith("=") && out.length > 0) {
      // `name=value`: a parameter of the current challenge.
      rest = afterSpace.slice(1).replace(/^[ \t]*/, "")
      let value = ""
      if (rest.startsWith("\"")) {
        let i = 1
        for (; i < rest.length && rest[i] !== "\""; i++) {
          if (rest[i] === "\\" && i + 1 < rest.length) i++
          value += rest[i]
        }
        rest = rest.slice(i + 1)
      } else {
        value = /^[^,\s]*/.exec(rest)?.[0] ?? ""
        rest = rest.slice(value.length)
      }
      out[out.length - 1]?.params.set(name.toLowerCase(), value)
    } else {
      out.push({ scheme: name, params: new Map() })
      rest = afterSpace
    }
  }
  return out
}

/** The first Bearer challenge of a header, if any. */
export const parseBearer = (header: string | null | undefined): Option.Option<BearerChallenge> => {
  if (header === null || header === undefined) return Option.none()
  const bearer = challenges(header).find((c) => c.scheme.toLowerCase() === "bearer")
  if (bearer === undefined) return Option.none()
  const get = (key: string) => Option.fromUndefinedOr(bearer.params.get(key)).pipe(Option.filter((v) => v.length > 0))
  return Option.some({
    resourceMetadata: get("resource_metadata"),
    scopes: Option.map(get("scope"), (s) => s.split(/\s+/).filter((x) => x.length > 0)),
    error: get("error"),
    errorDescription: get("error_description"),
    params: bearer.params
  })
}

/** Whether a response asks for more scopes than the token has (RFC 6750 §3.1). */
export const isInsufficientScope = (status: number, challenge: Option.Option<BearerChallenge>): boolean =>
  status === 403 && Option.exists(challenge, (c) => Option.contains(c.error, "insufficient_scope"))
