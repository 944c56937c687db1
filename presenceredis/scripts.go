package presenceredis

// The Lua scripts. Each touches one group's two keys and its bucket's
// directory, which share a hash tag, so each runs atomically in one slot.

// mergeScript writes one batch of a group.
//
//	KEYS  h, z, d
//	ARGV  known epoch ("" if none), fresh epoch, known seq, member,
//	      ndel, ndel consumers to delete,
//	      then per consumer: name, registered, heartbeat, active, leases, score
//
// It first checks the bucket: if the mirror knew an epoch and the directory
// now holds none or another, or its seq went back, the bucket lost data
// (lost = 1). Then it deletes, then merges each consumer: the later
// heartbeat (with its leases and score) and active time and the earlier
// registration win. Times are fixed-width decimals, compared as strings.
// It returns {epoch, seq, lost, written}.
const mergeScript = `
local ep = redis.call('HGET', KEYS[3], 'epoch')
local lost = 0
if not ep then
  ep = ARGV[2]
  redis.call('HSET', KEYS[3], 'epoch', ep)
  if ARGV[1] ~= '' then lost = 1 end
elseif ARGV[1] ~= '' and ep ~= ARGV[1] then
  lost = 1
end
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
if ARGV[1] ~= '' and seq <= tonumber(ARGV[3]) then lost = 1 end
local ndel = tonumber(ARGV[5])
for i = 6, 5 + ndel do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
local n = 0
for i = 6 + ndel, #ARGV, 6 do
  local c, reg, hb, act, leases, score = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  local cur = redis.call('HGET', KEYS[1], c)
  if cur then
    local creg, chb, cact, cleases = string.match(cur, '^(%d+) (%d+) (%d+) (%d+)$')
    if creg then
      if creg < reg then reg = creg end
      if chb > hb then hb = chb; leases = cleases; score = nil end
      if cact > act then act = cact end
    end
  end
  redis.call('HSET', KEYS[1], c, reg .. ' ' .. hb .. ' ' .. act .. ' ' .. leases)
  if score then redis.call('ZADD', KEYS[2], score, c) end
  n = n + 1
end
if n > 0 then redis.call('HSET', KEYS[3], ARGV[4], '1') end
return {ep, seq, lost, n}
`

// pruneScript deletes a group's consumers scored below ARGV[1] and, if the
// group is left empty, its directory entry ARGV[2]. It returns {deleted,
// left}.
const pruneScript = `
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, c in ipairs(dead) do redis.call('HDEL', KEYS[1], c) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
local left = redis.call('HLEN', KEYS[1])
if left == 0 then redis.call('HDEL', KEYS[3], ARGV[2]) end
return {#dead, left}
`
