/**
 * ConfigSuggest: "did you mean ...?" for unknown keys and variables, by edit
 * distance, and the test for key names that look like someone is putting a
 * secret in the file.
 */
import * as Option from "effect/Option"

/** Damerau-free Levenshtein distance, for "did you mean" suggestions. */
export const distance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost))
    }
    previous = current
  }
  return previous[b.length] ?? 0
}

/** The candidate nearest to `name`, when it is near enough to be a plausible typo. */
export const nearest = (
  name: string,
  candidates: Iterable<string>,
  maxDistance = Math.max(2, Math.floor(name.length / 3))
): Option.Option<string> => {
  let best: { readonly candidate: string; readonly d: number } | undefined
  for (const candidate of candidates) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase())
    if (best === undefined || d < best.d) best = { candidate, d }
  }
  return best !== undefined && best.d <= maxDistance
    ? Option.some(best.candidate)
    : Option.none()
}

/** Key names that suggest someone is putting secret material in the file. */
export const looksLikeSecret = (name: string): boolean =>
  /(^|_)(key|secret|password|passphrase|token)$/i.test(name)

/**
 * The "expected ..." phrase for an unknown key: the nearest sibling, or the
 * nearest key elsewhere (`elsewhere` maps a last segment to its dotted key),
 * or the list of keys allowed here.
 */
export const unknownKeyExpected = (
  name: string,
  siblings: ReadonlyArray<string>,
  elsewhere: ReadonlyMap<string, string> = new Map()
): string => {
  const near = nearest(name, siblings)
  if (Option.isSome(near)) return `a known key (did you mean ${near.value}?)`
  const far = nearest(name, elsewhere.keys())
  if (Option.isSome(far)) return `a known key (did you mean ${elsewhere.get(far.value) ?? far.value}?)`
  return `a known key (allowed here: ${siblings.join(", ")})`
}
