import { LuaScript } from './lua-script.js';

/*
 * The store's Lua scripts. Each one runs atomically in Redis, so "check, then
 * act" is never split by another client. Keys and values always arrive in
 * KEYS and ARGV, never in the script text: the text stays the same for every
 * lock, so EVALSHA reuses one cached script, and no key can inject Lua.
 * (string.format only ever formats numbers here: Lua 5.1's %s stops at a NUL
 * byte, and owners and channels may contain one.)
 *
 * KEYS of the per-lock scripts, all in one hash slot (see lockKeys):
 *   1 lock     string  owner, expiring when the lease ends
 *   2 fence    counter INCR'ed by every grant, never deleted
 *   3 queue    zset    waiting owners, scored by arrival
 *   4 waiters  hash    waiting owner -> "expiresAt:ttl:channel"
 *
 * Queue entries expire on the server's clock (TIME), so a waiter that died or
 * lost its connection drops out by itself: it must refresh its entry before
 * `expiresAt`. The queue's two keys expire with their longest-lived entry.
 *
 * Acquire and release first try the uncontended case (no queue) and return
 * before the helpers below are defined: Redis builds a script's local
 * functions anew on every call, which measured 1.6 µs a call, and a table
 * reply costs about 1 µs more than a number. The uncontended pair is the
 * one whose cost the benchmark holds against plain SET NX.
 */

/** Helpers shared by the per-lock scripts. */
const QUEUE_HELPERS = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function grant(owner, ttl)
  redis.call('SET', KEYS[1], owner, 'PX', ttl)
  return redis.call('INCR', KEYS[2])
end

local function dequeue(owner)
  redis.call('ZREM', KEYS[3], owner)
  redis.call('HDEL', KEYS[4], owner)
end

-- The longest waiter whose entry has not expired, with its ttl and channel;
-- expired entries met on the way are dropped.
local function head(now)
  while true do
    local first = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not first then return nil end
    local entry = redis.call('HGET', KEYS[4], first)
    if entry then
      local expires, ttl, channel = string.match(entry, '^(%d+):(%d+):(.*)$')
      if tonumber(expires) > now then return first, ttl, channel end
    end
    dequeue(first)
  end
end

-- Gives the free lock to the waiter and wakes it with "token:owner".
local function hand(owner, ttl, channel)
  local token = grant(owner, ttl)
  dequeue(owner)
  redis.call('PUBLISH', channel, string.format('%d:', token) .. owner)
end

-- The lock is free: hand it to the longest live waiter, if any.
local function serve()
  local first, ttl, channel = head(clock())
  if first then hand(first, ttl, channel) end
end

local function fence()
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
`;

/**
 * Takes the lock if it is free and no live waiter is ahead; otherwise, when
 * waiting (`life` > 0), joins the queue or refreshes this owner's entry.
 * A free lock with a live waiter ahead is handed to that waiter on the way,
 * so whoever notices first that a lease ran out serves the queue in order.
 *
 * ARGV: owner, ttl (ms), life (ms an entry lives unrefreshed; 0 = one try),
 *       channel (only when life > 0)
 * Returns token: granted by this call, nobody queued
 *         {1, token}: granted by this call, ahead of the queue
 *         {2, token}: already held by this owner (handed over earlier)
 *         {0, pttl, fence}: busy; pttl = the holder's remaining lease, fence = the counter now
 */
export const ACQUIRE = new LuaScript(
  'acquire',
  `
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
${QUEUE_HELPERS}
local owner, ttl, life = ARGV[1], ARGV[2], tonumber(ARGV[3])
local holder = redis.call('GET', KEYS[1])
if holder == owner then return {2, fence()} end
local now
if not holder then
  now = clock()
  local first, firstTtl, channel = head(now)
  if not first or first == owner then
    if first then dequeue(owner) end
    return {1, grant(owner, ttl)}
  end
  hand(first, firstTtl, channel)
end
if life > 0 then
  now = now or clock()
  if not redis.call('ZSCORE', KEYS[3], owner) then
    local tail = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    redis.call('ZADD', KEYS[3], (tonumber(tail[2]) or 0) + 1, owner)
  end
  redis.call('HSET', KEYS[4], owner, string.format('%d:%d:', now + life, ttl) .. ARGV[4])
  for i = 3, 4 do
    if redis.call('PTTL', KEYS[i]) < life then redis.call('PEXPIRE', KEYS[i], life) end
  end
end
return {0, redis.call('PTTL', KEYS[1]), fence()}
`,
);

/**
 * Compare-and-delete: releases only if ARGV[1] holds the lock, then hands it
 * to the longest live waiter. Returns 1 when released, 0 when not held.
 */
export const RELEASE = new LuaScript(
  'release',
  `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 0 then return 1 end
${QUEUE_HELPERS}
serve()
return 1
`,
);

/**
 * A waiter gives up: leaves the queue. If the lock was handed to it in the
 * meantime it keeps it (ARGV[2] = '1') or releases it to the next waiter.
 *
 * ARGV: owner, keep ('1' or '0')
 * Returns {1, token}: this owner holds the lock and keeps it
 *         {0, pttl}: not held by this owner (pttl of whoever holds it, -2 if free)
 */
export const LEAVE = new LuaScript(
  'leave',
  `${QUEUE_HELPERS}
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  if ARGV[2] == '1' then return {1, fence()} end
  redis.call('DEL', KEYS[1])
  holder = false
end
dequeue(ARGV[1])
if not holder and redis.call('EXISTS', KEYS[3]) == 1 then serve() end
return {0, redis.call('PTTL', KEYS[1])}
`,
);

/**
 * Compare-and-set renewal of many locks at once. KEYS: lock keys; ARGV:
 * owner and ttl for each key, in the same order. Returns 1 (renewed) or 0
 * (not held by that owner) per key.
 */
export const RENEW = new LuaScript(
  'renew',
  `
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[2 * i - 1] then
    redis.call('PEXPIRE', key, ARGV[2 * i])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
`,
);

/**
 * {@link RENEW} for the locks one Cluster node serves, in different slots.
 * KEYS[1] only routes the call to the node; ARGV: key, owner and ttl for each
 * lock. Redis 7 lets a script flagged allow-cross-slot-keys reach keys of
 * other slots on its node.
 */
export const RENEW_ON_NODE = new LuaScript(
  'renew',
  `#!lua flags=allow-cross-slot-keys
local renewed = {}
for i = 1, #ARGV, 3 do
  if redis.call('GET', ARGV[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', ARGV[i], ARGV[i + 2])
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
return renewed
`,
);
