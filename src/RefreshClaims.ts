/**
 * RefreshClaims: how the instances of a fleet share the background refresh
 * work. Each refreshable session is claimed by one instance at a time, with
 * a lease; only the holder's `RefreshSupervisor` schedules it. The supervisor
 * calls {@link Shape.sync} every {@link renewalInterval} (a third of the
 * lease): that renews this instance's presence and its claims, claims free
 * sessions up to a fair share (the sessions divided by the live instances,
 * rounded up) and gives up claims over the share, so the work spreads when
 * an instance joins. An instance that dies stops renewing: its claims and
 * its presence expire after one lease, and the others claim its sessions at
 * their next renewal, within one lease and one renewal interval. A clean
 * shutdown releases at once ({@link Shape.release}).
 *
 * Claims only decide who schedules; one refresh per grant is still the
 * refresh lock's business, so a claim that moves while a refresh runs costs
 * at most a wasted wake-up, never a second refresh.
 *
 * `RedisClaims.ts` keeps the claims in Redis; {@link makeMemory} keeps them in
 * a {@link Board} shared by supervisors of one process (tests, TestClock).
 */
import { Clock, Context, Data, Duration, Effect, Ref } from "effect"

/** The claims could not be read or renewed (the supervisor keeps what it had). */
export class RefreshClaimsError extends Data.TaggedError("RefreshClaimsError")<{ readonly detail: string }> {
  override get message(): string {
    return `refresh claims: ${this.detail}`
  }
}

/** The operations. */
export interface Shape {
  /** This instance's name in the claims. */
  readonly instance: string
  /** How long a claim and a presence last without renewal. */
  readonly lease: Duration.Duration
  /**
   * Renews this instance's presence and its claims among `ids`, claims free
   * ones up to its fair share, releases those over it; returns the ids held now.
   */
  readonly sync: (ids: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, RefreshClaimsError>
  /** Gives up every claim and the presence (clean shutdown). */
  readonly release: Effect.Effect<void>
}

/** The claims of this instance; without this service every supervisor schedules every session. */
export class RefreshClaims extends Context.Service<RefreshClaims, Shape>()("magictunnel-session/RefreshClaims") {}

/** How many renewals a lease allows for. */
export const renewalsPerLease = 3

/** How often the supervisor calls `sync`: a third of the lease. */
export const renewalInterval = (lease: Duration.Duration): Duration.Duration =>
  Duration.millis(Math.max(1, Math.floor(Duration.toMillis(lease) / renewalsPerLease)))

/** The fair share of `sessions` for one of `instances` live instances. */
export const fairShare = (sessions: number, instances: number): number => Math.ceil(sessions / Math.max(1, instances))

/** The claims and presences of a {@link Board}: owner and expiry (epoch ms). */
export interface BoardState {
  readonly claims: ReadonlyMap<string, { readonly owner: string; readonly until: number }>
  readonly instances: ReadonlyMap<string, number>
}

/** In-memory claims shared by the supervisors of one process. */
export type Board = Ref.Ref<BoardState>

/** An empty board. */
export const makeBoard: Effect.Effect<Board> = Ref.make<BoardState>({ claims: new Map(), instances: new Map() })

/**
 * One `sync` over a board state, the algorithm the Redis script runs too:
 * presence, count of live instances, renew own claims up to the share and
 * release the rest, then claim free ones up to the share.
 */
export const step = (
  state: BoardState,
  options: { readonly instance: string; readonly ids: ReadonlyArray<string>; readonly now: number; readonly leaseMs: number }
): readonly [ReadonlySet<string>, BoardState] => {
  const { instance, now } = options
  const until = now + options.leaseMs
  const instances = new Map(Array.from(state.instances).filter(([, u]) => u > now))
  instances.set(instance, until)
  const claims = new Map(Array.from(state.claims).filter(([, c]) => c.until > now))
  const share = fairShare(options.ids.length, instances.size)
  const held = new Set<string>()
  for (const id of options.ids) {
    if (claims.get(id)?.owner !== instance) continue
    if (held.size < share) {
      held.add(id)
      claims.set(id, { owner: instance, until })
    } else {
      claims.delete(id)
    }
  }
  for (const id of options.ids) {
    if (held.size >= share) break
    if (claims.has(id)) continue
    held.add(id)
    claims.set(id, { owner: instance, until })
  }
  return [held, { claims, instances }]
}

/** Claims on a shared in-memory board, with leases on the `Clock`. */
export const makeMemory = (options: {
  readonly board: Board
  readonly instance: string
  readonly lease: Duration.Duration
}): Shape => {
  const leaseMs = Duration.toMillis(options.lease)
  return RefreshClaims.of({
    instance: options.instance,
    lease: options.lease,
    sync: (ids) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.modify(options.board, (state) => step(state, { instance: options.instance, ids, now, leaseMs }))),
    release: Ref.update(options.board, (state) => ({
      claims: new Map(Array.from(state.claims).filter(([, c]) => c.owner !== options.instance)),
      instances: new Map(Array.from(state.instances).filter(([name]) => name !== options.instance))
    }))
  })
}
