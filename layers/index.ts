/** The edge compositions, for embedding applications. */
export * from "./Main.js"
