/**
 * The fleet mode's services, which `StoreFromConfig` imports only when the
 * selection picks the Redis store: the store and its connection, the refresh
 * lock, the refresh claims and the fleet sync. One module, so that the CLI
 * bundle keeps them in one chunk that no other command loads.
 */
export * as FleetSync from "../src/FleetSync.js"
export * as RedisClaims from "../src/RedisClaims.js"
export * as RedisLock from "../src/RedisLock.js"
export * as RedisStore from "../src/TokenStore/Redis.js"
