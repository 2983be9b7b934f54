"""The Lua scripts behind every store operation; each one runs atomically inside Redis.

Atomicity is what makes delivery at-most-once across any number of gateway processes: the check
("is it there, is it unused, is it this slave's?") and the removal happen in one script, so two callers
can never both win. Every script receives the store's index and tombstone sets as ``KEYS`` and builds the
per-key hash names from ``material_prefix`` (same hash tag, hence same slot; Redis Cluster allows that).

Time comes from the Redis server (``TIME``), not from the callers, so gateways with skewed clocks agree on
expiry. Expired entries become tombstones too. Pruning is bounded per call so one call never stalls Redis
on a large backlog.

**At most once, with bounded tombstones.** A store with an ID window ``W`` (``ARGV[3]``, ms; the stores of
relayed keys, see :class:`relay.pool.store.Lifetimes`) treats a UUIDv7 key_ID (:func:`relay.domain.new_key_id`)
as *time-bound*: it carries its creation time ``t``, and PUT refuses it once ``now >= t + W`` (Redis
time), or while ``t > now + skew`` (``ARGV[4]``, the clock-skew margin: a stamp from further ahead would
keep its tombstone too long). Its tombstone is written to expire at ``t + W``. So for every instant
after a time-bound key_ID was first stored: before ``t + W`` the key, its tombstone or both exist (the
key until it is retired, and retiring writes the tombstone in the same script), and from ``t + W`` on
the window refuses it; both rules use the same ``t`` and the same clock, so no clock skew between the
minting gateway and Redis can open a gap (skew only decides how soon a late put is refused, never
whether a second one is accepted). The window needs no bound for safety; it must only exceed the time
from minting to the last legitimate put (a few hop timeouts) by the skew, hence ``W`` = the longest key
lifetime of the relayed stores plus the margin. A time-bound tombstone therefore lives at most
``W + skew`` and never more than ``W`` past the key's creation. Every other key_ID (020 hand-overs from a
KMS that does not mint UUIDv7, vendor QKD key IDs: QKD pools have no window) is *foreign*: its tombstone
lives ``retired_ttl`` (``ARGV[2]``), as before, and it is refused while the tombstone lives; that stays at
most once because every copy that can still reach the store ends well before that (a hop is refused
after its freshness window, a waiting key expires after its own lifetime, and ``retired_ttl`` is at
least twice the store's key lifetime). A foreign KMS that mints UUIDv7 key_IDs gets the time-bound rule
too (a store cannot tell who minted an ID, and the rule must cover every ID whose tombstone it shortens):
its keys are refused if handed over more than ``W`` after their creation, availability yielding to at
most once. The one assumption is the one every TTL here already makes: the
Redis server's clock does not step back by more than the margin.

A key can be *reserved* (handed to a writer that has yet to put it on the wire): its hash then carries
the reservation token (``r``) and its original deadline (``e``), and its index score becomes the
reservation's deadline, so the prune turns a reservation nobody commits or releases into a tombstone,
never back into a deliverable key. No script hands out or voids a reserved key; only its holder's release
gives it back (with its original deadline), and committing is retiring.
"""

from __future__ import annotations

from enum import Enum

PRUNE_BATCH = 256
# A UUIDv7 in Lua pattern syntax, capturing the 32 high and 16 low bits of its 48-bit Unix-ms stamp
UUIDV7_PATTERN = "^(%x%x%x%x%x%x%x%x)%-(%x%x%x%x)%-7%x%x%x%-[89abAB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

_PRELUDE = f"""
local index, retired = KEYS[1], KEYS[2]
local prefix, retired_ttl = ARGV[1], tonumber(ARGV[2])
local id_window, skew = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- The creation time (Unix ms) a UUIDv7 key_ID (either case) carries, in a store with an ID window; else nil.
local function stamp_of(id)
  if id_window == 0 then return nil end
  local high, low = string.match(id, '{UUIDV7_PATTERN}')
  return high and tonumber(high .. low, 16)
end

-- The creation time of a key_ID that is time-bound here: one with a stamp no further ahead than the skew
-- margin. nil: a foreign key_ID (tombstoned for retired_ttl), or one from too far ahead (never stored).
local function minted(id)
  local stamp = stamp_of(id)
  if stamp and stamp <= now + skew then return stamp end
  return nil
end

-- Whether a key_ID may no longer enter this store, tombstone or not: its window has closed, or its stamp
-- lies beyond the skew margin (its window would close too far ahead for its tombstone to be bounded).
local function out_of_window(id)
  local stamp = stamp_of(id)
  return stamp ~= nil and (stamp + id_window <= now or stamp > now + skew)
end

-- A time-bound key_ID's tombstone lasts until its window closes (from then on out_of_window refuses it),
-- a foreign one's for retired_ttl; one out of its window already needs none.
local function retire(id)
  redis.call('DEL', prefix .. id)
  redis.call('ZREM', index, id)
  if out_of_window(id) then return end
  local stamp = minted(id)
  redis.call('ZADD', retired, stamp and stamp + id_window or now + retired_ttl, id)
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, {PRUNE_BATCH})) do
  retire(id)
end
redis.call('ZREMRANGEBYSCORE', retired, '-inf', now)
"""

# ARGV[5] ttl ms, ARGV[6] owner, ARGV[7] path (the route a relayed key came along, '' for none), then
# key_ID, sealed blob pairs. Returns the key_IDs stored; IDs already present, tombstoned or out of their
# window are skipped, so a retried put never revives a delivered key, nor a late hop a voided one.
_PUT = """
local deadline = now + tonumber(ARGV[5])
local owner, path = ARGV[6], ARGV[7]
local stored = {}
for i = 8, #ARGV, 2 do
  local id, name = ARGV[i], prefix .. ARGV[i]
  if not out_of_window(id) and not redis.call('ZSCORE', retired, id) and redis.call('EXISTS', name) == 0 then
    redis.call('HSET', name, 'b', ARGV[i + 1], 'o', owner, 'p', path)
    redis.call('PEXPIREAT', name, deadline)
    redis.call('ZADD', index, deadline, id)
    stored[#stored + 1] = id
  end
end
return stored
"""

# ARGV[5] n. The n keys closest to expiry, or nothing if fewer than n are live: {id1, blob1, id2, ...}.
_TAKE_OLDEST = """
local ids = redis.call('ZRANGEBYSCORE', index, '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[5]))
if #ids < tonumber(ARGV[5]) then return {} end
local taken = {}
for _, id in ipairs(ids) do
  taken[#taken + 1] = id
  taken[#taken + 1] = redis.call('HGET', prefix .. id, 'b')
  retire(id)
end
return taken
"""

# Shared by the scripts that take or reserve keys by key_ID.
_CHECK_IDS = """
-- Verdict per key_ID ARGV[first..] for ``owner``: ok | retired | missing | denied | reserved (another call
-- is handing it out right now). Returns nil if every one is ok, else {'refused', verdict1, verdict2, ...}.
local function check_ids(owner, first)
  local verdicts, refused = {}, false
  for i = first, #ARGV do
    local id, name = ARGV[i], prefix .. ARGV[i]
    local verdict = 'ok'
    if redis.call('ZSCORE', retired, id) then verdict = 'retired'
    elseif redis.call('EXISTS', name) == 0 then verdict = 'missing'
    elseif redis.call('HGET', name, 'o') ~= owner then verdict = 'denied'
    elseif redis.call('HGET', name, 'r') then verdict = 'reserved' end
    refused = refused or verdict ~= 'ok'
    verdicts[#verdicts + 1] = verdict
  end
  if refused then return {'refused', unpack(verdicts)} end
  return nil
end
"""

# ARGV[5] owner, then key_IDs. All or nothing: {'ok', blob1, path1, blob2, path2, ...} in request order
# (the path is part of the blob's associated data), or {'refused', verdict1, verdict2, ...} with a verdict
# per key_ID (see ``check_ids``).
_TAKE_IDS = """
local refusal = check_ids(ARGV[5], 6)
if refusal then return refusal end
local blobs = {'ok'}
for i = 6, #ARGV do
  blobs[#blobs + 1] = redis.call('HGET', prefix .. ARGV[i], 'b')
  blobs[#blobs + 1] = redis.call('HGET', prefix .. ARGV[i], 'p') or ''
  retire(ARGV[i])
end
return blobs
"""

# ARGV[5] owner, ARGV[6] token, ARGV[7] reservation ttl ms, then key_IDs. Answers like TAKE_IDS; on
# success every key is reserved for the token until committed (retired), released, or pruned (tombstone).
_RESERVE_IDS = """
local refusal = check_ids(ARGV[5], 8)
if refusal then return refusal end
local token, held_until = ARGV[6], now + tonumber(ARGV[7])
local blobs = {'ok'}
for i = 8, #ARGV do
  local id, name = ARGV[i], prefix .. ARGV[i]
  local deadline = tonumber(redis.call('ZSCORE', index, id))
  blobs[#blobs + 1] = redis.call('HGET', name, 'b')
  blobs[#blobs + 1] = redis.call('HGET', name, 'p') or ''
  redis.call('HSET', name, 'r', token, 'e', deadline)
  redis.call('ZADD', index, math.min(deadline, held_until), id)
end
return blobs
"""

# ARGV[5] token, then key_IDs. Gives back the keys this token still holds, with their original deadline;
# a reservation that has run out (pruned or not yet) ends as a tombstone. Returns how many were given back.
_RELEASE = """
local token, released = ARGV[5], 0
for i = 6, #ARGV do
  local id, name = ARGV[i], prefix .. ARGV[i]
  local score = redis.call('ZSCORE', index, id)
  if score and redis.call('HGET', name, 'r') == token then
    local deadline = tonumber(redis.call('HGET', name, 'e'))
    if tonumber(score) > now and deadline > now then
      redis.call('HDEL', name, 'r', 'e')
      redis.call('ZADD', index, deadline, id)
      released = released + 1
    else
      retire(id)
    end
  end
end
return released
"""

# ARGV[5..] key_IDs to retire whether or not they are stored. Returns how many were live.
_RETIRE = """
local live = 0
for i = 5, #ARGV do
  live = live + redis.call('EXISTS', prefix .. ARGV[i])
  retire(ARGV[i])
end
return live
"""

# ARGV[5] owner, ARGV[6] path, then key_IDs; no key_IDs means every live key of that owner and path.
# Retires the live keys among them stored for that owner along exactly that path; others' keys are left
# alone, and so are reserved ones (being handed out: a void cannot take back what may already be on the
# wire) and delivered ones (tombstoned already). A named key_ID not present at all is tombstoned, so a
# late put (a hop still in flight) cannot bring it back. Returns {voided key_IDs, tombstoned key_IDs}.
_VOID = """
local owner, path, ids, named = ARGV[5], ARGV[6], {}, #ARGV > 6
if named then
  for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGEBYSCORE', index, '(' .. now, '+inf')
end
local voided, tombstoned = {}, {}
for _, id in ipairs(ids) do
  local name = prefix .. id
  if redis.call('EXISTS', name) == 1 then
    if redis.call('HGET', name, 'o') == owner and (redis.call('HGET', name, 'p') or '') == path
        and not redis.call('HGET', name, 'r') then
      retire(id)
      voided[#voided + 1] = id
    end
  elseif named and not redis.call('ZSCORE', retired, id) then
    retire(id)
    tombstoned[#tombstoned + 1] = id
  end
end
return {voided, tombstoned}
"""

# Number of live (unexpired) keys.
_LEVEL = """
return redis.call('ZCOUNT', index, '(' .. now, '+inf')
"""


# The 020 hand-over ledger (relay/pool/handovers.py): one string per key_ID, no prelude.
# KEYS: records; ARGV[1] value, ARGV[2] ttl ms. Creates absent records only.
_LEDGER_CREATE = """
for _, name in ipairs(KEYS) do redis.call('SET', name, ARGV[1], 'NX', 'PX', ARGV[2]) end
return #KEYS
"""
# KEYS: records; ARGV: one status per record. All or nothing: returns the indexes (1-based) of absent
# records and changes nothing if there are any; else sets each awaiting record's status.
_LEDGER_SETTLE = """
local absent = {}
for i, name in ipairs(KEYS) do
  if redis.call('EXISTS', name) == 0 then absent[#absent + 1] = i end
end
if #absent > 0 then return absent end
for i, name in ipairs(KEYS) do
  if redis.call('GET', name) == 'awaiting' then redis.call('SET', name, ARGV[i], 'KEEPTTL') end
end
return absent
"""
# KEYS: records. Marks awaiting ones abandoned; returns the indexes (1-based) of those it marked.
_LEDGER_ABANDON = """
local marked = {}
for i, name in ipairs(KEYS) do
  if redis.call('GET', name) == 'awaiting' then
    redis.call('SET', name, 'abandoned', 'KEEPTTL')
    marked[#marked + 1] = i
  end
end
return marked
"""

# KEYS: the demand log's buckets, newest first; ARGV: the newest bucket's expiry (ms since the epoch), then
# (member, count) pairs to add to it. Returns each bucket's (member, count, ...) list, newest first.
_DEMAND = """
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], 'INCR', ARGV[i + 1], ARGV[i]) end
if #ARGV > 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
local buckets = {}
for i, name in ipairs(KEYS) do buckets[i] = redis.call('ZRANGEBYSCORE', name, '-inf', '+inf', 'WITHSCORES') end
return buckets
"""

# Token buckets (relay/pool/buckets.py), no prelude. KEYS: bucket hashes (tokens 't', last refill 'at' ms);
# ARGV: capacity, tokens per second, cost for each. All or nothing: if any bucket, refilled to now, holds
# less than its cost, returns {its index (1-based), ms until it would (-1: the cost exceeds its capacity)}
# and changes nothing; else takes every cost and returns {0, 0}. A bucket idle long enough to be full
# again expires: an absent bucket is a full one.
_TAKE_TOKENS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local left = {}
for i, name in ipairs(KEYS) do
  local capacity, rate, cost = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local tokens = tonumber(redis.call('HGET', name, 't') or capacity)
  local at = tonumber(redis.call('HGET', name, 'at') or now)
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
  if cost > capacity then return {i, -1} end
  if tokens < cost then return {i, math.ceil((cost - tokens) * 1000 / rate)} end
  left[i] = tokens - cost
end
for i, name in ipairs(KEYS) do
  local capacity, rate = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  redis.call('HSET', name, 't', tostring(left[i]), 'at', now)
  redis.call('PEXPIREAT', name, now + math.ceil((capacity - left[i]) * 1000 / rate) + 1000)
end
return {0, 0}
"""

# Leases (relay/pool/leases.py), no prelude. KEYS[1] the lease; ARGV[1] the holder's token, ARGV[2] ttl ms.
# (Extended by SET ... PX, not PEXPIRE: the gateways' Redis users may run only the commands listed in
# relay.pki.redis_access.)
# Takes a free lease, or extends it if the holder has it already; 1 if it holds it now, else 0.
_LEASE_ACQUIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# Extends the lease only while the holder still has it (never re-takes one that ran out); 1 if extended.
_LEASE_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS[1] the lease; ARGV[1] the holder's token. Deletes it only if the holder has it; 1 if it did.
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# The retry queue (relay/pool/retries.py), no prelude: KEYS[1] the ``due`` sorted set (entry -> next attempt,
# Redis ms), ARGV[1] the prefix of the entry hashes (body 'b', deadline 'd', 'w' the delay after its next
# failed attempt, claim 'c').
_RETRY_CLOCK = """
local due, prefix = KEYS[1], ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
# ARGV[2] entry, ARGV[3] body, ARGV[4] ms left until the deadline, ARGV[5] first delay ms, ARGV[6] how long
# past its deadline an entry nobody settled is kept. Its first retry is due after the first delay.
_RETRY_ADD = """
local name, deadline = prefix .. ARGV[2], now + tonumber(ARGV[4])
redis.call('HSET', name, 'b', ARGV[3], 'd', deadline, 'w', tonumber(ARGV[5]) * 2)
redis.call('PEXPIREAT', name, deadline + tonumber(ARGV[6]))
redis.call('ZADD', due, now + tonumber(ARGV[5]), ARGV[2])
return 1
"""
# ARGV[2] claimer's token, ARGV[3] hold ms, ARGV[4] at most this many. Claims due entries: each is due again
# only when the hold runs out, so no other claimer gets it meanwhile. Returns {entry, body, ms left until its
# deadline, ...}; an entry whose hash expired is dropped.
_RETRY_CLAIM = """
local claimed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))) do
  local name = prefix .. id
  if redis.call('EXISTS', name) == 0 then
    redis.call('ZREM', due, id)
  else
    redis.call('ZADD', due, now + tonumber(ARGV[3]), id)
    redis.call('HSET', name, 'c', ARGV[2])
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = redis.call('HGET', name, 'b')
    claimed[#claimed + 1] = tonumber(redis.call('HGET', name, 'd')) - now
  end
end
return claimed
"""
# ARGV[2] claimer's token, ARGV[3] entry, ARGV[4] 'done' | 'again' | 'drop'. Only the entry's current claimer
# settles it ('lost' otherwise). 'again' schedules the next attempt after the entry's delay, which then
# doubles, unless that attempt would come at or past the deadline ('exhausted'); 'done' and 'drop' remove
# it ('removed'), as does 'exhausted'.
_RETRY_SETTLE = """
local name, id, outcome = prefix .. ARGV[3], ARGV[3], ARGV[4]
if redis.call('HGET', name, 'c') ~= ARGV[2] then return 'lost' end
if outcome == 'again' then
  local delay = tonumber(redis.call('HGET', name, 'w'))
  if now + delay < tonumber(redis.call('HGET', name, 'd')) then
    redis.call('HSET', name, 'w', delay * 2)
    redis.call('HDEL', name, 'c')
    redis.call('ZADD', due, now + delay, id)
    return 'scheduled'
  end
end
redis.call('DEL', name)
redis.call('ZREM', due, id)
if outcome == 'again' then return 'exhausted' end
return 'removed'
"""


# The gateway's shared encapsulation keyring (relay/pool/ek_store.py), no prelude. KEYS[1]: the index (sorted
# set of ek_id hex -> not_after ms); ARGV[1]: the entries' name prefix (+ ek_id hex: the sealed entry, a
# string expiring at not_after); ARGV[2]: now (ms, the gateway's clock, the one not_after is stamped with).
# Entries past not_after, or whose string is gone, leave the index and Redis first.
_EK_PRELUDE = """
local index, prefix, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local function drop(id)
  redis.call('DEL', prefix .. id)
  redis.call('ZREM', index, id)
end
local held = redis.call('ZRANGEBYSCORE', index, '-inf', '+inf', 'WITHSCORES')
for i = 1, #held, 2 do
  if tonumber(held[i + 1]) < now or redis.call('EXISTS', prefix .. held[i]) == 0 then drop(held[i]) end
end
"""
# Returns {ek_id, not_after, sealed entry, ...}, oldest first.
_EK_LOAD = """
local entries = {}
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '+inf', 'WITHSCORES')
for i = 1, #ids, 2 do
  entries[#entries + 1] = ids[i]
  entries[#entries + 1] = ids[i + 1]
  entries[#entries + 1] = redis.call('GET', prefix .. ids[i])
end
return entries
"""
# ARGV[3] ek_id hex, ARGV[4] its not_after, ARGV[5] the sealed entry, ARGV[6] '' (publish whatever is held)
# or a time: publish only if no held key's not_after reaches it (the current key is due for rotation), so
# replicas rotating at once publish one key. Then only the two newest stay. Returns 1 if the entry is held.
_EK_PUBLISH = """
local id, not_after = ARGV[3], tonumber(ARGV[4])
local newest = redis.call('ZRANGEBYSCORE', index, '-inf', '+inf', 'WITHSCORES')
if ARGV[6] ~= '' and #newest > 0 and tonumber(newest[#newest]) >= tonumber(ARGV[6]) then return 0 end
redis.call('SET', prefix .. id, ARGV[5], 'PX', math.max(1, not_after - now))
redis.call('ZADD', index, not_after, id)
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '+inf')
for i = 1, #ids - 2 do drop(ids[i]) end
if redis.call('ZSCORE', index, id) then return 1 end
return 0
"""

# The transfer log (relay/gateway/transfers.py): one string per frame. KEYS[1] the record; ARGV[1] the value
# it must hold (``pending:<owner>``), ARGV[2] the new value, ARGV[3] ttl ms. Compare-and-set, so a late
# ``done`` never overwrites the ``failed`` another replica wrote, nor the reverse. Returns {1} if written,
# else {0, the value it holds (false: none)}.
_TRANSFER_SETTLE = """
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then return {0, held} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1}
"""


class Script(Enum):
    """Each member's value is the full Lua source (a store's: shared prelude + body; the ledger's: body)."""

    PUT = _PRELUDE + _PUT
    TAKE_OLDEST = _PRELUDE + _TAKE_OLDEST
    TAKE_IDS = _PRELUDE + _CHECK_IDS + _TAKE_IDS
    RESERVE_IDS = _PRELUDE + _CHECK_IDS + _RESERVE_IDS
    RELEASE = _PRELUDE + _RELEASE
    RETIRE = _PRELUDE + _RETIRE
    VOID = _PRELUDE + _VOID
    LEVEL = _PRELUDE + _LEVEL
    LEDGER_CREATE = _LEDGER_CREATE
    LEDGER_SETTLE = _LEDGER_SETTLE
    LEDGER_ABANDON = _LEDGER_ABANDON
    DEMAND = _DEMAND
    TAKE_TOKENS = _TAKE_TOKENS
    LEASE_ACQUIRE = _LEASE_ACQUIRE
    LEASE_RENEW = _LEASE_RENEW
    LEASE_RELEASE = _LEASE_RELEASE
    RETRY_ADD = _RETRY_CLOCK + _RETRY_ADD
    RETRY_CLAIM = _RETRY_CLOCK + _RETRY_CLAIM
    RETRY_SETTLE = _RETRY_CLOCK + _RETRY_SETTLE
    EK_LOAD = _EK_PRELUDE + _EK_LOAD
    EK_PUBLISH = _EK_PRELUDE + _EK_PUBLISH
    TRANSFER_SETTLE = _TRANSFER_SETTLE
