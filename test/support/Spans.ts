/**
 * A tracer that keeps every span it makes, for tests that assert names,
 * parents and attributes without an exporter: `Effect.withTracer(tracer)`,
 * then read `spans`.
 */
import { Tracer } from "effect"

/** A recording tracer and the spans it has made so far, in order. */
export const recording = (): { readonly tracer: Tracer.Tracer; readonly spans: Array<Tracer.NativeSpan> } => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { tracer, spans }
}
