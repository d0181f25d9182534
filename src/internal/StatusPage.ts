/**
 * The HTML of the status page (`/` of `mtsession run --status-port`): the
 * sessions with state, expiry countdown, last refresh and last error, the
 * supervisor's health, and recent refresh activity. Rendered on the server
 * from secret-free views (every value escaped); it reloads itself every
 * {@link reloadSeconds} and a small inline script ticks the countdowns.
 */

/** What one session row shows. */
export interface Row {
  readonly id: string
  readonly provider: string
  readonly state: string
  readonly expiresAt: string | null
  readonly nextRefreshAt: string | null
  readonly lastRefreshAt: string | null
  readonly lastOutcome: string | null
  readonly lastError: string | null
}

/** One line of recent activity. */
export interface Activity {
  readonly time: string
  readonly event: string
  readonly provider: string | null
  readonly session: string | null
  readonly outcome: string
  readonly reason: string | null
}

/** Everything the page shows. */
export interface View {
  readonly now: string
  readonly healthy: boolean
  readonly backend: string
  readonly backendAvailable: boolean
  readonly supervisorAlive: boolean
  readonly supervisorEnabled: boolean
  readonly queueDepth: number
  readonly inFlight: number
  readonly rows: ReadonlyArray<Row>
  readonly activity: ReadonlyArray<Activity>
}

/** How often the page reloads itself. */
export const reloadSeconds = 10

const escape = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&#39;")

const cell = (s: string | null, placeholder = "-") => s === null || s === "" ? `<td class="none">${placeholder}</td>` : `<td>${escape(s)}</td>`

const time = (iso: string | null, cls: string) =>
  iso === null ? `<td class="none">-</td>` : `<td class="${cls}" data-at="${escape(iso)}" title="${escape(iso)}">${escape(iso)}</td>`

/** The page. The only script is the countdown ticker; the content security policy allows nothing else. */
export const render = (view: View, nonce: string): string => {
  const rows = view.rows.map((r) =>
    `<tr data-session="${escape(r.id)}"><td>${escape(r.provider)}</td><td>${escape(r.id)}</td>` +
    `<td class="state state-${escape(r.state)}">${escape(r.state)}</td>${time(r.expiresAt, "countdown")}` +
    `${time(r.nextRefreshAt, "countdown")}${cell(r.lastRefreshAt)}${cell(r.lastOutcome)}${cell(r.lastError, "")}</tr>`
  ).join("\n")
  const activity = view.activity.map((a) =>
    `<tr><td>${escape(a.time)}</td><td>${escape(a.event)}</td>${cell(a.provider)}${cell(a.session)}<td>${
      escape(a.outcome)
    }</td>${cell(a.reason, "")}</tr>`
  ).join("\n")
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${reloadSeconds}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mtsession status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} .none{color:#999}
.state-active{color:#1a7f37;font-weight:600} .state-expired{color:#9a6700;font-weight:600}
.state-needs_reauth,.state-corrupted{color:#cf222e;font-weight:600}
#health.ok{color:#1a7f37} #health.bad{color:#cf222e}
</style></head><body>
<h1>mtsession status <span id="health" class="${view.healthy ? "ok" : "bad"}">${view.healthy ? "healthy" : "unhealthy"}</span></h1>
<p>Backend <b>${escape(view.backend)}</b> (${view.backendAvailable ? "available" : "unavailable"}); background refresh ${
    view.supervisorEnabled ? (view.supervisorAlive ? "running" : "stopped") : "off"
  }; ${view.queueDepth} waiting, ${view.inFlight} in flight. As of <span id="now" data-at="${escape(view.now)}">${escape(view.now)}</span>.</p>
<h2>Sessions</h2>
<table id="sessions"><thead><tr><th>provider</th><th>session</th><th>state</th><th>expires in</th><th>next refresh</th><th>last refresh</th><th>last outcome</th><th>last error</th></tr></thead>
<tbody>
${rows === "" ? `<tr><td colspan="8" class="none">No sessions.</td></tr>` : rows}
</tbody></table>
<h2>Recent activity</h2>
<table id="activity"><thead><tr><th>time</th><th>event</th><th>provider</th><th>session</th><th>outcome</th><th>reason</th></tr></thead>
<tbody>
${activity === "" ? `<tr><td colspan="6" class="none">Nothing yet.</td></tr>` : activity}
</tbody></table>
<script nonce="${escape(nonce)}">
(function(){
  var skew = Date.now() - Date.parse(document.getElementById("now").dataset.at);
  function fmt(ms){
    var neg = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
    var t = (h > 0 ? h + "h " : "") + (h > 0 || m > 0 ? m + "m " : "") + r + "s";
    return neg ? t + " ago" : "in " + t;
  }
  function tick(){
    var now = Date.now() - skew;
    document.querySelectorAll("td.countdown").forEach(function(td){ td.textContent = fmt(Date.parse(td.dataset.at) - now); });
  }
  tick(); setInterval(tick, 1000);
})();
</script>
</body></html>
`
}
