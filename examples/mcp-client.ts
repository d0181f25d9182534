/**
 * An MCP client (or gateway) on magictunnel-session, without Effect: the
 * MCP SDK's client with the drop-in provider. The first run signs in
 * (discovery, dynamic client registration, PKCE, resource indicator) in the
 * browser; every later run, and every other process of the same user,
 * reuses the stored session, refreshed once per grant across processes.
 *
 *   npx tsx examples/mcp-client.ts https://mcp.example.com/mcp
 *
 * Or sign in from the shell first and run non-interactively (a service):
 *
 *   mtsession login --mcp https://mcp.example.com/mcp
 *   MCP_NONINTERACTIVE=1 npx tsx examples/mcp-client.ts https://mcp.example.com/mcp
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import * as McpClient from "../src/mcp/Client.js"

const serverUrl = process.argv[2] ?? "http://127.0.0.1:3000/mcp"
const interactive = process.env["MCP_NONINTERACTIVE"] !== "1"

// One runtime per process: every server's sessions share the store, the refresh lock and the token cache.
const runtime = McpClient.fromConfig()

const auth = runtime.client({
  serverUrl,
  ...(interactive
    ? { interactive: { onAuthorizationUrl: (url) => console.error(`Open this URL to sign in:\n\n  ${url}\n`) } }
    : {})
})

const client = new Client({ name: "mcp-client-example", version: "1.0.0" })
try {
  // The one line of setup: the provider and the authorized fetch.
  await client.connect(new StreamableHTTPClientTransport(new URL(serverUrl), auth.transportOptions))
  const { tools } = await client.listTools()
  console.log(`tools on ${serverUrl}: ${tools.map((t) => t.name).join(", ") || "(none)"}`)
} finally {
  await client.close()
  await runtime.close()
}
