/**
 * Secret-safe rendering of Schema decode failures: each problem as a dotted
 * path and the expectation, with any echo of the input removed, because the
 * inputs decoded here (token responses, records) are secrets.
 */
import * as SchemaIssue from "effect/SchemaIssue"

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** One problem: where and what was expected, never the value. */
export interface Problem {
  readonly path: string
  readonly message: string
}

/** Lists the problems of an issue without input values. */
export const problems = (issue: SchemaIssue.Issue): ReadonlyArray<Problem> =>
  formatter(issue).issues.map((i) => ({
    path: (i.path ?? []).map(String).join("."),
    message: i.message.replace(/, got [\s\S]*$/, "")
  }))

/** `a.b: Expected ...; c: Missing key`, secret-free. */
export const render = (issue: SchemaIssue.Issue): string =>
  problems(issue).map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`)).join("; ")
