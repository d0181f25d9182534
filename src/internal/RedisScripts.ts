/**
 * RedisScripts: the key layout of the fleet store and the Lua scripts that
 * make every change atomic in Redis.
 *
 * All keys of one namespace share the hash tag `{<sha256(namespace)[:16]>}`,
 * so they live in one slot and a script may touch the record, the metadata
 * hash and the lock of a session at once (and Redis Cluster accepts it):
 *
 *   <prefix>{ns}:rec:<fileKey>           hash: data (base64 envelope), gen, fence
 *   <prefix>{ns}:meta                    hash: session id -> secret-free entry (JSON)
 *   <prefix>{ns}:lock:<fileKey>          refresh lock: holder JSON with token and fence, PX lease
 *   <prefix>{ns}:fence                   counter: one fencing token per lock acquisition
 *   <prefix>{ns}:corrupt:<fileKey>:<ms>  a record that did not open, set aside
 *   <prefix>{ns}:events                  pub/sub channel: put / remove of a session
 *   <prefix>{ns}:claim:<fileKey>         background refresh claim: instance name, PX lease
 *   <prefix>{ns}:instances               sorted set: live instances, scored by lease end (ms)
 *
 * The put script is the compare-and-set: a record whose generation is lower
 * than the stored one is refused (`stale`), and a write made under a refresh
 * lock (fenced) is refused when another holder has the lock now or wrote
 * with a newer fencing token (`fenced`), or when the session was removed
 * meanwhile (`gone`). So a late writer whose lock expired can never overwrite
 * a newer rotation.
 */
import * as Crypto from "node:crypto"
import { script } from "./RedisClient.js"

/** The keys of one namespace. */
export const keysOf = (prefix: string, namespace: string) => {
  const tag = Crypto.createHash("sha256").update(namespace).digest("hex").slice(0, 16)
  const base = `${prefix}{${tag}}`
  return {
    record: (fileKey: string) => `${base}:rec:${fileKey}`,
    meta: `${base}:meta`,
    lock: (fileKey: string) => `${base}:lock:${fileKey}`,
    fence: `${base}:fence`,
    corrupt: (fileKey: string, ms: number) => `${base}:corrupt:${fileKey}:${ms}`,
    events: `${base}:events`,
    claim: (fileKey: string) => `${base}:claim:${fileKey}`,
    instances: `${base}:instances`
  }
}

/** The key layout of one namespace. */
export type Keys = ReturnType<typeof keysOf>

/**
 * KEYS: record, meta, lock. ARGV: data, generation, id, entry JSON, lock token
 * ("" when unfenced), fence ("" when unfenced), channel, event JSON.
 * Returns {"ok"} or {"stale"|"fenced"|"gone", detail}.
 */
export const put = script(`
local cur = redis.call('HMGET', KEYS[1], 'gen', 'fence')
local gen = tonumber(ARGV[2])
local fenced = ARGV[5] ~= ''
if fenced then
  local holder = redis.call('GET', KEYS[3])
  if holder then
    local ok, h = pcall(cjson.decode, holder)
    if not ok or h.token ~= ARGV[5] then
      return {'fenced', 'another instance holds the refresh lock now'}
    end
  end
end
if cur[1] then
  if tonumber(cur[1]) > gen then
    return {'stale', 'stored generation ' .. cur[1] .. ' is newer than ' .. ARGV[2]}
  end
  if fenced and cur[2] and tonumber(cur[2]) > tonumber(ARGV[6]) then
    return {'fenced', 'written meanwhile under a newer lock (fence ' .. cur[2] .. ' > ' .. ARGV[6] .. ')'}
  end
elseif fenced and gen > 0 then
  return {'gone', 'the session was removed while it was being refreshed'}
end
local fence = cur[2] or '0'
if fenced and tonumber(ARGV[6]) > tonumber(fence) then fence = ARGV[6] end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'gen', ARGV[2], 'fence', fence)
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[7], ARGV[8])
return {'ok'}
`)

/** KEYS: record, meta. ARGV: id, channel, event JSON. */
export const remove = script(`
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

/**
 * Moves a record that did not open aside, if it is still the bytes judged.
 * KEYS: record, meta, corrupt. ARGV: data judged, id, corrupted entry JSON. Returns 1, or 0 when it changed.
 */
export const quarantine = script(`
if redis.call('HGET', KEYS[1], 'data') ~= ARGV[1] then return 0 end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
`)

/**
 * One non-blocking lock attempt. KEYS: lock, fence counter. ARGV: token, pid,
 * hostname, acquired at (ms), lease (ms). Returns the fencing token, or nil when held.
 */
export const acquire = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
local holder = cjson.encode({token = ARGV[1], pid = tonumber(ARGV[2]), hostname = ARGV[3], acquiredAt = tonumber(ARGV[4]), fence = fence})
redis.call('SET', KEYS[1], holder, 'PX', ARGV[5])
return fence
`)

/** Extends the lease if we still hold the lock. KEYS: lock. ARGV: token, lease (ms). Returns 1 or 0. */
export const renew = script(`
local holder = redis.call('GET', KEYS[1])
if not holder then return 0 end
local ok, h = pcall(cjson.decode, holder)
if not ok or h.token ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

/** Deletes the lock only if we still hold it. KEYS: lock. ARGV: token. */
export const release = script(`
local holder = redis.call('GET', KEYS[1])
if not holder then return 0 end
local ok, h = pcall(cjson.decode, holder)
if not ok or h.token ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

/**
 * One renewal of the background refresh claims (the algorithm of
 * `RefreshClaims.step`, on Redis's clock). KEYS: instances, then one claim key
 * per candidate session. ARGV: instance, lease (ms), then the session ids in
 * the order of the claim keys. Returns the ids this instance holds now.
 */
export const claimSync = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], lease * 2)
local share = math.ceil((#KEYS - 1) / redis.call('ZCARD', KEYS[1]))
local out = {}
local free = {}
for i = 2, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner == me then
    if #out < share then
      redis.call('PEXPIRE', KEYS[i], lease)
      out[#out + 1] = ARGV[i + 1]
    else
      redis.call('DEL', KEYS[i])
    end
  elseif not owner then
    free[#free + 1] = i
  end
end
for _, i in ipairs(free) do
  if #out >= share then break end
  redis.call('SET', KEYS[i], me, 'PX', lease)
  out[#out + 1] = ARGV[i + 1]
end
return out
`)

/** Gives up claims and the presence. KEYS: instances, then claim keys. ARGV: instance. */
export const claimRelease = script(`
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)
