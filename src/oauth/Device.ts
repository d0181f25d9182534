/**
 * The device authorization grant (RFC 8628) for machines without a browser:
 * ask for a user code, show it, then poll the token endpoint until the user
 * approved it elsewhere, refused it, or the code expired.
 *
 * Polling is a {@link pollSchedule}: `interval` from the server (5 s when it
 * sends none), plus 5 s for this and every later poll after each
 * `slow_down`, bounded by the code's `expires_in`. Transient failures (a 5xx,
 * a dropped connection) keep polling: the user may still be typing the code.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8628#section-3.5
 */
import { Data, Duration, Effect, Option, Schedule } from "effect"
import type { HttpClient } from "effect/http"
import * as oauth from "oauth4webapi"
import { call } from "./Fetch.js"
import { endpoint, type Resolved } from "./Metadata.js"
import { OAuthError } from "./OAuthError.js"

/** The polling interval when the server sends none (RFC 8628 §3.2). */
export const defaultInterval = Duration.seconds(5)

/** What each `slow_down` adds to the interval, for good (RFC 8628 §3.5). */
export const slowDownIncrement = Duration.seconds(5)

/** What the user needs to approve the device: shown by the caller. */
export interface CodeInfo {
  readonly verification_uri: string
  readonly verification_uri_complete?: string
  readonly user_code: string
  /** Seconds until the code expires. */
  readonly expires_in: number
  /** Seconds between polls. */
  readonly interval: number
}

/** A poll that found the authorization still pending (`slowDown` when the server asked to back off). */
export class DevicePending extends Data.TaggedError("DevicePending")<{ readonly slowDown: boolean }> {}

/**
 * The delay before each poll, fed with each poll's failure: `interval`,
 * growing by {@link slowDownIncrement} at every {@link DevicePending} with
 * `slowDown`. Outputs the current interval.
 */
export const pollSchedule = (interval: Duration.Duration): Schedule.Schedule<Duration.Duration, unknown> =>
  Schedule.fromStep(Effect.sync(() => {
    // Per-run state of this schedule: each polling run starts again from `interval`.
    let current = interval
    return (_now: number, input: unknown) => {
      if (input instanceof DevicePending && input.slowDown) current = Duration.sum(current, slowDownIncrement)
      return Effect.succeed([current, current] as [Duration.Duration, Duration.Duration])
    }
  }))

/** Runs the grant up to the token response. */
export const run = (
  deps: {
    readonly client: HttpClient.HttpClient
    readonly resolved: Resolved
    readonly requestTimeout: Duration.Duration
  },
  options: {
    readonly scopes: ReadonlyArray<string>
    readonly resource: Option.Option<string>
    readonly onCode: (info: CodeInfo) => Effect.Effect<void>
  }
): Effect.Effect<oauth.TokenEndpointResponse, OAuthError> =>
  Effect.gen(function*() {
    const { as, client, clientAuth, secrets, insecureLoopback, name } = deps.resolved
    yield* endpoint(deps.resolved, "deviceAuthorization", "device_authorization_endpoint")
    const base = {
      client: deps.client,
      provider: name,
      operation: "deviceAuthorization" as const,
      insecureLoopback,
      timeout: deps.requestTimeout
    }
    const parameters: Record<string, string> = { scope: options.scopes.join(" ") }
    if (Option.isSome(options.resource)) parameters["resource"] = options.resource.value
    const authorization = yield* call(
      { ...base, secrets },
      async (request) =>
        oauth.processDeviceAuthorizationResponse(
          as,
          client,
          await oauth.deviceAuthorizationRequest(as, client, clientAuth, parameters, request)
        )
    )
    const interval = authorization.interval === undefined
      ? defaultInterval
      : Duration.seconds(Math.max(1, authorization.interval))
    yield* Effect.annotateCurrentSpan("oauth.device.interval_seconds", Duration.toSeconds(interval))
    yield* options.onCode({
      verification_uri: authorization.verification_uri,
      ...(authorization.verification_uri_complete === undefined
        ? {}
        : { verification_uri_complete: authorization.verification_uri_complete }),
      user_code: authorization.user_code,
      expires_in: authorization.expires_in,
      interval: Duration.toSeconds(interval)
    })

    const pollSecrets = [...secrets, authorization.device_code]
    const poll = call(
      { ...base, secrets: pollSecrets },
      async (request) =>
        oauth.processDeviceCodeResponse(
          as,
          client,
          await oauth.deviceCodeGrantRequest(as, client, clientAuth, authorization.device_code, request)
        )
    ).pipe(
      Effect.catch((error): Effect.Effect<never, OAuthError | DevicePending> => {
        const reason = error.reason
        if (reason._tag === "Protocol" && reason.code === "authorization_pending") {
          return Effect.fail(new DevicePending({ slowDown: false }))
        }
        if (reason._tag === "Protocol" && reason.code === "slow_down") {
          return Effect.fail(new DevicePending({ slowDown: true }))
        }
        return Effect.fail(error)
      })
    )

    // The first poll waits one interval too: the user needs time to act (RFC 8628 §3.5).
    yield* Effect.sleep(interval)
    return yield* poll.pipe(
      Effect.retry({
        schedule: pollSchedule(interval).pipe(Schedule.upTo({ duration: Duration.seconds(authorization.expires_in) })),
        while: (error) => error._tag === "DevicePending" || error.retryable
      }),
      Effect.catchTag("DevicePending", () =>
        Effect.fail(
          new OAuthError({
            provider: name,
            operation: "deviceAuthorization",
            reason: { _tag: "ExpiredToken", description: Option.some("no approval before the code expired") }
          })
        ))
    )
  })
