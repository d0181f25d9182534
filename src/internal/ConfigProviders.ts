/**
 * ConfigProviders: decodes `auth.oauth.providers.<name>` into
 * {@link ProviderSettings}. A provider names its endpoints (or an issuer to
 * discover them from, RFC 8414), its client and the scopes it asks for. The
 * client secret is never in the file: `client_secret_env` names the
 * environment variable that holds it, and its value stays `Redacted`.
 *
 * Endpoints must be `https://`, except on loopback hosts (RFC 8252 §8.3 and
 * local test servers), because tokens and secrets cross them.
 */
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type { Node } from "yaml"
import type { ConfigProblem, ProviderSettings } from "../SessionConfig.js"
import { clientRegistrationProvider, providerNamePattern } from "../TokenStore.js"
import { looksLikeSecret, unknownKeyExpected } from "./ConfigSuggest.js"
import * as Yaml from "./ConfigYaml.js"

/** Where problems go, and how a line is shown (`config.yaml:12`). */
export interface Sink {
  readonly problem: (problem: ConfigProblem) => void
  readonly at: (line: number) => string
}

const urlKeys = [
  "issuer",
  "authorization_endpoint",
  "token_endpoint",
  "device_authorization_endpoint",
  "revocation_endpoint",
  "introspection_endpoint",
  "userinfo_endpoint"
] as const
type UrlKey = typeof urlKeys[number]

/** Every key a provider accepts. */
export const providerKeys: ReadonlyArray<string> = [
  ...urlKeys,
  "client_id",
  "client_secret_env",
  "scopes",
  "resource",
  "redirect_port"
]

const loopbackHost = (hostname: string): boolean =>
  hostname.toLowerCase() === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)

const httpsExpected =
  "an absolute https:// URL (http:// only for loopback hosts: 127.0.0.0/8, [::1], localhost)"

/** Checks an endpoint, issuer or resource URL; the failure is the "expected" phrase. */
export const checkUrl = (
  text: string,
  options: { readonly noQuery?: boolean } = {}
): Result.Result<string, { readonly expected: string; readonly showValue: boolean }> => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Result.fail({ expected: httpsExpected, showValue: true })
  }
  // Credentials in a URL would be a secret in the file, and in every message that echoes it.
  if (url.username !== "" || url.password !== "") {
    return Result.fail({ expected: "a URL without user:password@ in it", showValue: false })
  }
  if (url.hash !== "") return Result.fail({ expected: "a URL without a #fragment", showValue: true })
  // RFC 8414 §2: an issuer identifier has no query or fragment.
  if (options.noQuery === true && url.search !== "") {
    return Result.fail({ expected: "an issuer URL without a ?query (RFC 8414 §2)", showValue: true })
  }
  if (url.protocol === "https:") return Result.succeed(text)
  if (url.protocol === "http:" && loopbackHost(url.hostname)) return Result.succeed(text)
  return Result.fail({ expected: httpsExpected, showValue: true })
}

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const scopeToken = /^[\x21\x23-\x5b\x5d-\x7e]+$/
const envName = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Decodes every provider under `node` (the value of `auth.oauth.providers`). */
export const decode = (
  parsed: Yaml.Parsed,
  node: Node | null,
  env: Readonly<Record<string, string | undefined>>,
  sink: Sink
): ReadonlyMap<string, ProviderSettings> => {
  const out = new Map<string, ProviderSettings>()
  for (const entry of Yaml.entries(parsed, node, 1)) {
    const provider = decodeOne(parsed, entry, env, sink)
    if (provider !== undefined) out.set(provider.name, provider)
  }
  return out
}

const decodeOne = (
  parsed: Yaml.Parsed,
  entry: Yaml.Entry,
  env: Readonly<Record<string, string | undefined>>,
  sink: Sink
): ProviderSettings | undefined => {
  const base = `auth.oauth.providers.${entry.name}`
  const report = (key: string, line: number, expected: string, actual?: string) =>
    sink.problem({ key, source: sink.at(line), expected, ...(actual === undefined ? {} : { actual }) })
  let ok = true
  const fail = (key: string, line: number, expected: string, actual?: string): undefined => {
    ok = false
    report(key, line, expected, actual)
    return undefined
  }

  if (!providerNamePattern.test(entry.name)) {
    fail(base, entry.keyLine, "a provider name of letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)")
  } else if (entry.name === clientRegistrationProvider) {
    fail(base, entry.keyLine, `a provider name other than "${clientRegistrationProvider}" (reserved for stored client registrations)`)
  }
  if (!Yaml.isMapping(entry.value)) {
    fail(base, entry.line, "a mapping with client_id and issuer or token_endpoint", Yaml.describe(entry.value))
    return undefined
  }

  const urls = new Map<UrlKey, string>()
  let clientId: string | undefined
  let clientSecret: Option.Option<Redacted.Redacted<string>> = Option.none()
  let scopes: ReadonlyArray<string> = []
  let resource: Option.Option<string> = Option.none()
  let redirectPort = 0

  const text = (key: string, field: Yaml.Entry, numbersToo = false): string | undefined => {
    const s = Yaml.scalar(field.value)
    if (s !== undefined && typeof s.value === "string" && s.value.length > 0) return s.value
    // Numeric client ids are common; the source text keeps leading zeros.
    if (numbersToo && s !== undefined && typeof s.value === "number" && s.text !== undefined) return s.text
    return fail(key, field.line, "a non-empty string", Yaml.describe(field.value))
  }
  const url = (key: string, field: Yaml.Entry, noQuery: boolean): string | undefined => {
    const raw = text(key, field)
    if (raw === undefined) return undefined
    const checked = checkUrl(raw, { noQuery })
    if (Result.isSuccess(checked)) return checked.success
    return fail(key, field.line, checked.failure.expected, checked.failure.showValue ? Yaml.describeValue(raw) : undefined)
  }

  for (const field of Yaml.entries(parsed, entry.value, entry.line)) {
    const key = `${base}.${field.name}`
    const urlKey = urlKeys.find((k) => k === field.name)
    if (urlKey !== undefined) {
      const value = url(key, field, urlKey === "issuer")
      if (value !== undefined) urls.set(urlKey, value)
      continue
    }
    switch (field.name) {
      case "client_id": {
        clientId = text(key, field, true)
        break
      }
      case "client_secret_env": {
        const name = text(key, field)
        if (name === undefined) break
        if (!envName.test(name)) {
          fail(key, field.line, "the name of an environment variable (letters, digits and '_')", Yaml.describeValue(name))
          break
        }
        const secret = env[name]
        if (secret === undefined || secret.length === 0) {
          fail(key, field.line, `the environment variable ${name} to hold the client secret`, `nothing (${name} is not set)`)
          break
        }
        clientSecret = Option.some(Redacted.make(secret, { label: `${name}` }))
        break
      }
      case "scopes": {
        const list = scopeList(parsed, field.value)
        if (list === undefined) {
          fail(key, field.line, "a list of scopes, or one string of scopes separated by spaces (RFC 6749 §3.3)")
        } else {
          scopes = list
        }
        break
      }
      case "resource": {
        const value = url(key, field, false)
        if (value !== undefined) resource = Option.some(value)
        break
      }
      case "redirect_port": {
        const s = Yaml.scalar(field.value)
        if (s !== undefined && typeof s.value === "number" && Number.isInteger(s.value) && s.value >= 0 && s.value <= 65535) {
          redirectPort = s.value
        } else {
          fail(key, field.line, "an integer between 0 and 65535 (0: any free port)", Yaml.describe(field.value))
        }
        break
      }
      case "client_secret": {
        // The value is never shown: it is the very secret that must not be here.
        fail(
          key,
          field.keyLine,
          "no client secret in the file: put it in an environment variable and name that variable with client_secret_env"
        )
        break
      }
      default: {
        fail(
          key,
          field.keyLine,
          looksLikeSecret(field.name)
            ? "no secrets in the file (a provider reads its client secret from the variable named by client_secret_env)"
            : unknownKeyExpected(field.name, providerKeys)
        )
      }
    }
  }

  // A key that is present but invalid has been reported already; only report what is missing.
  const written = new Set(Yaml.entries(parsed, entry.value, entry.line).map((f) => f.name))
  if (!written.has("client_id")) {
    fail(`${base}.client_id`, entry.keyLine, "a client_id (required)", "nothing")
  }
  if (!written.has("issuer") && !written.has("token_endpoint")) {
    fail(base, entry.keyLine, "an issuer (for discovery, RFC 8414) or a token_endpoint")
  }
  if (!ok || clientId === undefined) return undefined
  const endpoint = (k: UrlKey) => Option.fromUndefinedOr(urls.get(k))
  return {
    name: entry.name,
    issuer: endpoint("issuer"),
    authorizationEndpoint: endpoint("authorization_endpoint"),
    tokenEndpoint: endpoint("token_endpoint"),
    deviceAuthorizationEndpoint: endpoint("device_authorization_endpoint"),
    revocationEndpoint: endpoint("revocation_endpoint"),
    introspectionEndpoint: endpoint("introspection_endpoint"),
    userinfoEndpoint: endpoint("userinfo_endpoint"),
    clientId,
    clientSecret,
    scopes,
    resource,
    redirectPort
  }
}

const scopeList = (parsed: Yaml.Parsed, node: Node | null): ReadonlyArray<string> | undefined => {
  if (Yaml.isEmpty(node)) return []
  const listed = Yaml.items(parsed, node)
  const raw: Array<string> = []
  if (listed !== undefined) {
    for (const item of listed) {
      const s = Yaml.scalar(item)
      if (s === undefined || typeof s.value !== "string") return undefined
      raw.push(...s.value.split(/\s+/))
    }
  } else {
    const s = Yaml.scalar(node)
    if (s === undefined || typeof s.value !== "string") return undefined
    raw.push(...s.value.split(/\s+/))
  }
  const scopes = raw.filter((s) => s.length > 0)
  return scopes.every((s) => scopeToken.test(s)) ? [...new Set(scopes)] : undefined
}
