-- src/backplane/sequence.lua: the sequencing script (backplane/link.rs loads it with SCRIPT
-- LOAD and calls it with EVALSHA for every publish). Atomic in Redis, so the order it numbers
-- messages in is the order they are kept and published in: one round trip per publish.
--   KEYS[1]  the topic's metadata, a hash: epoch, seq     (PREFIX{TOPIC}:meta)
--   KEYS[2]  the topic's log, a stream of the last ARGV[4] messages with ids 0-SEQ (PREFIX{TOPIC}:log)
--   ARGV[1]  the topic's channel; ARGV[2] 't' or 'b'; ARGV[3] the payload; ARGV[4] entries kept
--   ARGV[5]  'SPUBLISH' on a Redis Cluster (the channel PREFIX{TOPIC} shares the keys' slot, so
--            the node that keeps the topic publishes it to that shard's subscribers), else
--            'PUBLISH' (also when absent)
--   ARGV[6]  milliseconds both keys live after the topic's last publish, at most (absent or 0:
--            until deleted): an abandoned topic leaves Redis; its next publish starts a new epoch
-- A topic without metadata (new, or lost: Redis restarted without persistence, key evicted)
-- starts a new epoch numbered by Redis's clock in microseconds, and its numbers continue
-- from there: above every number of an earlier epoch (fewer than one message per
-- microsecond was numbered in it), so a position from before is recognisably stale.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local pos = string.format('%d', seq)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-' .. pos, 'k', ARGV[2], 'm', ARGV[3])
-- Renewed once half of it has passed (a read per publish, two writes per half-life, rather
-- than two writes per publish): the keys live from half the TTL to all of it after the last
-- publish.
local ttl = tonumber(ARGV[6] or '0')
if ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl / 2 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call(ARGV[5] or 'PUBLISH', ARGV[1], '\0w' .. string.upper(ARGV[2]) .. pos .. ':' .. epoch .. ':' .. ARGV[3])
return seq
