package presenceredis

// The Lua scripts. Each touches one bucket's keys, which share a hash tag,
// so each runs atomically in one slot.

// mergeScript writes one batch of one bucket.
//
//	KEYS  the bucket's hash
//	ARGV  known epoch ("" if none), fresh epoch, known seq, ndel,
//	      ndel fields to delete, then field and record of each write
//
// It first checks the bucket: if the mirror knew an epoch and the hash now
// holds none or another, or its seq went back, the bucket lost data
// (lost = 1). Then it deletes, then merges each written record with the
// stored one: the later heartbeat (with its leases) and active time and the
// earlier registration win, and the declared TTL travels with its
// heartbeat: the newer record's, unless it declares none (zeros), in which
// case the other's stays, as presence.Registry.Merge keeps it. Records are
// fixed-width (see encodeRecord), so each time is a substring compared as a
// string; a stored record of the length before TTLs declares none. Every 1000 writes cost one
// HMGET and one HSET (unpack stays under Lua's limit of 8000 values). It
// returns {epoch, seq, lost, written}.
const mergeScript = `
local h = KEYS[1]
local ep = redis.call('HGET', h, 'epoch')
local lost = 0
if not ep then
  ep = ARGV[2]
  redis.call('HSET', h, 'epoch', ep)
  if ARGV[1] ~= '' then lost = 1 end
elseif ARGV[1] ~= '' and ep ~= ARGV[1] then
  lost = 1
end
local seq = redis.call('HINCRBY', h, 'seq', 1)
if ARGV[1] ~= '' and seq <= tonumber(ARGV[3]) then lost = 1 end
local sub = string.sub
-- merge returns the record to store for new record rec over stored v.
local none = '0000000000'
local function merge(v, rec)
  if not v or (#v ~= 84 and #v ~= 73) then return rec end
  local hb, chb = sub(rec, 22, 41), sub(v, 22, 41)
  local reg, creg = sub(rec, 1, 20), sub(v, 1, 20)
  local act, cact = sub(rec, 43, 62), sub(v, 43, 62)
  local ttl, cttl = sub(rec, 75, 84), none
  if #v == 84 then cttl = sub(v, 75, 84) end
  if chb <= hb and creg >= reg and cact <= act and (ttl ~= none or cttl == none) then return rec end
  local leases = sub(rec, 64, 73)
  if chb > hb then
    hb = chb; leases = sub(v, 64, 73); ttl = cttl
  elseif ttl == none then
    ttl = cttl
  end
  if creg < reg then reg = creg end
  if cact > act then act = cact end
  return reg .. ' ' .. hb .. ' ' .. act .. ' ' .. leases .. ' ' .. ttl
end
local ndel = tonumber(ARGV[4])
for s = 5, 4 + ndel, 1000 do
  redis.call('HDEL', h, unpack(ARGV, s, math.min(s + 999, 4 + ndel)))
end
local first = 5 + ndel
local nw = (#ARGV - first + 1) / 2
for s = 0, nw - 1, 1000 do
  local e = math.min(s + 999, nw - 1)
  local names = {}
  for i = s, e do names[#names + 1] = ARGV[first + 2 * i] end
  local cur = redis.call('HMGET', h, unpack(names))
  local hs = {}
  for i = s, e do
    hs[#hs + 1] = names[i - s + 1]
    hs[#hs + 1] = merge(cur[i - s + 1], ARGV[first + 2 * i + 1])
  end
  redis.call('HSET', h, unpack(hs))
end
return {ep, seq, lost, nw}
`

// pruneScript deletes the consumers of bucket hash KEYS[1] that are expired:
// those that declared no TTL if their heartbeat is before ARGV[1] (a time as
// encodeTime writes it), the others if their heartbeat, in milliseconds, is
// more than twice their TTL before ARGV[2] (now in Unix milliseconds; Lua's
// doubles make that comparison good to a few microseconds). It returns how
// many it deleted. It reads the whole bucket: its cost grows with the
// bucket's size.
const pruneScript = `
local all = redis.call('HGETALL', KEYS[1])
local dead = {}
local now = tonumber(ARGV[2])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local ttl = 0
  if #v == 84 then ttl = tonumber(string.sub(v, 75, 84)) end
  if #v == 84 or #v == 73 then
    local hb = string.sub(v, 22, 41)
    if ttl == 0 then
      if hb < ARGV[1] then dead[#dead + 1] = all[i] end
    elseif (tonumber(hb) - 9223372036854775808) / 1e6 + 2 * ttl < now then
      dead[#dead + 1] = all[i]
    end
  end
end
for s = 1, #dead, 1000 do
  redis.call('HDEL', KEYS[1], unpack(dead, s, math.min(s + 999, #dead)))
end
return #dead
`
