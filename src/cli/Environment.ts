/**
 * The services effect/cli requires of every command (`Command.Environment`),
 * as `NodeServices.layer` provides them, except that the terminal is built on
 * first use: building it opens `process.stdin`, which only prompts need, and
 * no command of ours prompts. (The build makes `node:readline` and
 * `node:child_process` load on first use too: scripts/build.mjs.)
 */
import * as NodeChildProcessSpawner from "@effect/platform-node/NodeChildProcessSpawner"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeStdio from "@effect/platform-node/NodeStdio"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import { Effect, Layer, Scope, Terminal } from "effect"

/** The Node terminal, built in this layer's scope when first used. */
const terminal = Layer.effect(
  Terminal.Terminal,
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const real = yield* Effect.cached(NodeTerminal.make().pipe(Scope.provide(scope)))
    return Terminal.make({
      columns: Effect.flatMap(real, (t) => t.columns),
      rows: Effect.flatMap(real, (t) => t.rows),
      size: Effect.flatMap(real, (t) => t.size),
      readInput: Effect.flatMap(real, (t) => t.readInput),
      readLine: Effect.flatMap(real, (t) => t.readLine),
      display: (text) => Effect.flatMap(real, (t) => t.display(text))
    })
  })
)

/** File system, path, stdio, the child process spawner and the lazy terminal. */
export const layer = Layer.mergeAll(terminal, NodeChildProcessSpawner.layer).pipe(
  Layer.provideMerge(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeStdio.layer))
)
