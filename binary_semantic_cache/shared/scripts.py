"""The Lua scripts that change Redis: each one step, entry and change log together.

Keys, under the prefix ``bsc:{NAME}:``:

==========  =======  ===================================================
``meta``    hash     ``fingerprint`` (encoder), ``epoch`` (this dataset)
``seq``     string   the last entry id given out
``e:ID``    hash     ``b`` blob, ``t`` stored at, ``x`` expires (or ""),
                     ``f`` key-index field (or ""), ``n`` namespace field
``lru``     zset     id -> last use (Redis time, seconds)
``exp``     zset     id -> expiry
``keys``    hash     key-index field -> id
``ns:NS``   set      ids of one namespace; ``nss`` the set of those sets
``log``     stream   ``op`` put (``id b t x``), del (``id why``), clear (``ns``)
==========  =======  ===================================================

Every script reads the time from Redis (``TIME``) unless a test clock gives it.
"""

_COMMON = """
local P = ARGV[1]
local maxlen = ARGV[2]
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function log(...)
  return redis.call('XADD', P .. 'log', 'MAXLEN', '~', maxlen, '*', ...)
end
local function drop(id, why)
  local e = P .. 'e:' .. id
  local f = redis.call('HMGET', e, 'f', 'n')
  if redis.call('DEL', e) == 0 then return false end
  redis.call('ZREM', P .. 'lru', id)
  redis.call('ZREM', P .. 'exp', id)
  if f[1] and f[1] ~= '' then redis.call('HDEL', P .. 'keys', f[1]) end
  if f[2] then redis.call('SREM', P .. 'ns:' .. f[2], id) end
  return log('op', 'del', 'id', id, 'why', why)
end
local function purge()
  local old = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(old) do drop(id, 'expired') end
end
"""

# ARGV: prefix, maxlen, now, capacity, then per entry: key field, namespace field, ttl, blob.
PUT = _COMMON + """
local cap = tonumber(ARGV[4])
purge()
local out = {}
for i = 5, #ARGV, 4 do
  local kf, ns, ttl, blob = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local id = false
  if kf ~= '' then id = redis.call('HGET', P .. 'keys', kf) end
  if not id then
    id = tostring(redis.call('INCR', P .. 'seq'))
    local n = redis.call('ZCARD', P .. 'lru')
    if n >= cap then
      for _, v in ipairs(redis.call('ZRANGE', P .. 'lru', 0, n - cap)) do drop(v, 'evicted') end
    end
  end
  local x = ''
  if ttl ~= '' then x = tostring(now + tonumber(ttl)) end
  local t = tostring(now)
  redis.call('HSET', P .. 'e:' .. id, 'b', blob, 't', t, 'x', x, 'f', kf, 'n', ns)
  redis.call('ZADD', P .. 'lru', now, id)
  if x ~= '' then redis.call('ZADD', P .. 'exp', x, id) else redis.call('ZREM', P .. 'exp', id) end
  if kf ~= '' then redis.call('HSET', P .. 'keys', kf, id) end
  redis.call('SADD', P .. 'ns:' .. ns, id)
  redis.call('SADD', P .. 'nss', ns)
  out[#out + 1] = id
  out[#out + 1] = log('op', 'put', 'id', id, 'b', blob, 't', t, 'x', x)
end
return out
"""

# ARGV: prefix, maxlen, now, id. Returns the log record's id, or 0 when there was none.
DELETE = _COMMON + """
purge()
local sid = drop(ARGV[4], 'deleted')
if sid then return sid end
return 0
"""

# ARGV: prefix, maxlen, now, namespace field or "" for everything.
CLEAR = _COMMON + """
local spaces
if ARGV[4] == '' then spaces = redis.call('SMEMBERS', P .. 'nss') else spaces = {ARGV[4]} end
for _, ns in ipairs(spaces) do
  local ids = redis.call('SMEMBERS', P .. 'ns:' .. ns)
  for _, id in ipairs(ids) do
    local e = P .. 'e:' .. id
    local f = redis.call('HGET', e, 'f')
    redis.call('DEL', e)
    redis.call('ZREM', P .. 'lru', id)
    redis.call('ZREM', P .. 'exp', id)
    if f and f ~= '' then redis.call('HDEL', P .. 'keys', f) end
  end
  redis.call('DEL', P .. 'ns:' .. ns)
  redis.call('SREM', P .. 'nss', ns)
end
return log('op', 'clear', 'ns', ARGV[4])
"""

# ARGV: prefix, maxlen, now.
PURGE = _COMMON + """
purge()
return 1
"""

# ARGV: fingerprint, a fresh epoch. Returns {fingerprint, epoch} as stored.
META = """
local m = KEYS[1]
if redis.call('EXISTS', m) == 0 then
  redis.call('HSET', m, 'fingerprint', ARGV[1], 'epoch', ARGV[2])
end
return redis.call('HMGET', m, 'fingerprint', 'epoch')
"""

# ARGV: prefix, then ids. Returns id, blob, stored, expires for each (empty blob: gone).
FETCH = """
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local v = redis.call('HMGET', P .. 'e:' .. ARGV[i], 'b', 't', 'x')
  out[#out + 1] = ARGV[i]
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or ''
  out[#out + 1] = v[3] or ''
end
return out
"""
