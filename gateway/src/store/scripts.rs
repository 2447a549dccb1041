//! Key names and the Lua scripts. Every multi-step change of a user's keys is one script, so
//! it is atomic in Redis and costs one command in the pipeline.
//!
//! Scripts are loaded with `SCRIPT LOAD` when the bridge connects and called with `EVALSHA`;
//! a `NOSCRIPT` answer (script cache flushed) reloads them and retries the command once.
//!
//! Lua numbers are doubles: offsets and timestamps are exact below 2^53
//! ([`MAX_OFFSET`](super::config::MAX_OFFSET)); message ids use all 64 bits, so they are
//! only ever handled as strings inside Lua.

/// The keys of one user, in the order every log script takes them (`KEYS[1..=5]`).
pub(crate) struct UserKeys {
    pub(crate) keys: [String; 5],
}

/// Suffixes of the log keys, in `KEYS` order.
const LOG_SUFFIXES: [&str; 5] = ["log", "meta", "dedup", "dedupq", "mid"];

impl UserKeys {
    /// `PREFIX:{user}:log`, `:meta`, `:dedup`, `:dedupq`, `:mid`.
    pub(crate) fn new(prefix: &str, user: &str) -> Self {
        Self {
            keys: LOG_SUFFIXES.map(|s| key(prefix, user, s)),
        }
    }
}

/// `PREFIX:{user}:suffix`. The braces are a Redis Cluster hash tag: all of a user's keys hash
/// to one slot, which multi-key scripts require.
pub(crate) fn key(prefix: &str, user: &str, suffix: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + user.len() + suffix.len() + 4);
    k.push_str(prefix);
    k.push_str(":{");
    k.push_str(user);
    k.push_str("}:");
    k.push_str(suffix);
    k
}

/// Helpers shared by the log scripts (prepended to each; Redis scripts cannot call each
/// other). `KEYS`: 1 log (stream, entry id `OFFSET-0`, fields m/f/p/t), 2 meta (hash
/// head/acked/lost), 3 dedup (hash field → "msgId:offset"), 4 dedupq (list of dedup fields,
/// oldest first), 5 mid (hash msgId → offset).
const PRELUDE: &str = r#"
local function off_of(id)
  return tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
end
local function num(n)
  return string.format('%d', n)
end
local function sid(n)
  return num(n) .. '-0'
end
local function refresh(ttl)
  for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
end
local function note_lost(upto)
  local lost = tonumber(redis.call('HGET', KEYS[2], 'lost') or '0')
  if upto > lost then redis.call('HSET', KEYS[2], 'lost', num(upto)) end
end
-- Removes entries with offset <= upto and their msgId index entries; returns how many.
local function drop_through(upto)
  local gone = redis.call('XRANGE', KEYS[1], '-', sid(upto))
  for _, e in ipairs(gone) do redis.call('HDEL', KEYS[5], e[2][2]) end
  if #gone > 0 then redis.call('XTRIM', KEYS[1], 'MINID', sid(upto + 1)) end
  return #gone
end
-- Keeps at most max entries and drops up to 16 front entries older than min_ts (bounded work
-- per call; each entry is dropped once). Dropped entries are unacked: they raise 'lost'.
local function trim(max, min_ts)
  local removed = 0
  local lost = 0
  local n = redis.call('XLEN', KEYS[1])
  if n > max then
    local over = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - max)
    lost = off_of(over[#over][1])
    removed = removed + drop_through(lost)
  end
  -- Look at the oldest entry alone first: usually it is young and that is all it costs.
  local first = min_ts > 0 and redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if first and tonumber(first[2][8]) < min_ts then
    local front = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 16)
    local last = 0
    for _, e in ipairs(front) do
      if tonumber(e[2][8]) < min_ts then last = off_of(e[1]) else break end
    end
    if last > 0 then
      removed = removed + drop_through(last)
      if last > lost then lost = last end
    end
  end
  if lost > 0 then note_lost(lost) end
  return removed
end
"#;

/// Commit. ARGV: 1 dedup field ('' = none), 2 msgId, 3 from, 4 payload, 5 ts_ms,
/// 6 buffer_max, 7 ttl_sec, 8 dedup_max, 9 min_ts. Returns {duplicate 0/1, msgId, offset}.
const COMMIT: &str = r#"
if ARGV[1] ~= '' then
  local d = redis.call('HGET', KEYS[3], ARGV[1])
  if d then
    local sp = string.find(d, ':', 1, true)
    return {1, string.sub(d, 1, sp - 1), tonumber(string.sub(d, sp + 1))}
  end
end
local off = redis.call('HINCRBY', KEYS[2], 'head', 1)
local r = redis.pcall('XADD', KEYS[1], sid(off), 'm', ARGV[2], 'f', ARGV[3], 'p', ARGV[4], 't', ARGV[5])
if type(r) == 'table' and r.err then
  -- The head counter fell behind the log (the meta key was lost while the log survived):
  -- continue above the stream's last id so no offset is ever reused.
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local top = 0
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then top = off_of(info[i + 1]) end
  end
  off = top + 1
  redis.call('HSET', KEYS[2], 'head', num(off))
  redis.call('XADD', KEYS[1], sid(off), 'm', ARGV[2], 'f', ARGV[3], 'p', ARGV[4], 't', ARGV[5])
end
redis.call('HSET', KEYS[5], ARGV[2], num(off))
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ':' .. num(off))
  if redis.call('RPUSH', KEYS[4], ARGV[1]) > tonumber(ARGV[8]) then
    redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4]))
  end
end
-- The age probe reads an entry: on every 8th commit only (it drops up to 16, so the log still
-- sheds old entries faster than commits add them; replays trim before reading).
trim(tonumber(ARGV[6]), off % 8 == 0 and tonumber(ARGV[9]) or 0)
refresh(ARGV[7])
return {0, ARGV[2], off}
"#;

/// Cumulative ack. ARGV: 1 up_to, 2 ttl_sec. Returns the acked offset.
const ACK_UP_TO: &str = r#"
local m = redis.call('HMGET', KEYS[2], 'head', 'acked')
local head = tonumber(m[1] or '0')
local acked = tonumber(m[2] or '0')
if head == 0 then return 0 end
local want = math.min(tonumber(ARGV[1]), head)
if want > acked then
  redis.call('HSET', KEYS[2], 'acked', num(want))
  drop_through(want)
  acked = want
end
refresh(ARGV[2])
return acked
"#;

/// Ack by id. ARGV: 1 ttl_sec, 2.. msgIds. Returns entries removed.
const ACK_IDS: &str = r#"
local n = 0
for i = 2, #ARGV do
  local off = redis.call('HGET', KEYS[5], ARGV[i])
  if off then
    n = n + redis.call('XDEL', KEYS[1], off .. '-0')
    redis.call('HDEL', KEYS[5], ARGV[i])
  end
end
if n > 0 then refresh(ARGV[1]) end
return n
"#;

/// Replay. ARGV: 1 after, 2 limit, 3 buffer_max, 4 min_ts, 5 ttl_sec, 6 max_bytes.
/// Returns {head, acked, lost, more 0/1, then per entry: offset, msgId, from, payload, ts};
/// stops after the entry that takes the payload bytes past max_bytes (more = 1 then, and when
/// limit entries were read).
const REPLAY: &str = r#"
trim(tonumber(ARGV[3]), tonumber(ARGV[4]))
local m = redis.call('HMGET', KEYS[2], 'head', 'acked', 'lost')
local head = tonumber(m[1] or '0')
local acked = tonumber(m[2] or '0')
local lost = tonumber(m[3] or '0')
local start = math.max(tonumber(ARGV[1]), acked) + 1
local limit = tonumber(ARGV[2])
local es = redis.call('XRANGE', KEYS[1], sid(start), '+', 'COUNT', limit)
local more = 0
if #es == limit then more = 1 end
local out = {head, acked, lost, more}
local budget = tonumber(ARGV[6])
for _, e in ipairs(es) do
  if budget <= 0 then
    out[4] = 1
    break
  end
  local f = e[2]
  budget = budget - #f[6]
  out[#out + 1] = off_of(e[1])
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
  out[#out + 1] = f[6]
  out[#out + 1] = f[8]
end
if head > 0 then refresh(ARGV[5]) end
return out
"#;

/// Trim. ARGV: 1 buffer_max, 2 min_ts. Returns entries removed.
const TRIM: &str = r#"
return trim(tonumber(ARGV[1]), tonumber(ARGV[2]))
"#;

/// Set a session record. KEYS: 1 sess. ARGV: node, shard, conn, at_ms, ttl_sec.
/// Returns the previous {node, shard, conn, at} (nils when none).
const SESSION_SET: &str = r#"
local prev = redis.call('HMGET', KEYS[1], 'node', 'shard', 'conn', 'at')
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'shard', ARGV[2], 'conn', ARGV[3], 'at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return prev
"#;

/// Refresh a session record if still (node, conn)'s. KEYS: 1 sess. ARGV: node, conn, ttl_sec.
const SESSION_REFRESH: &str = r#"
local c = redis.call('HMGET', KEYS[1], 'node', 'conn')
if c[1] == ARGV[1] and c[2] == ARGV[2] then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"#;

/// Compare-and-delete a session record. KEYS: 1 sess. ARGV: node, conn.
const SESSION_REMOVE: &str = r#"
local c = redis.call('HMGET', KEYS[1], 'node', 'conn')
if c[1] == ARGV[1] and c[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// The scripts, indexed by [`ScriptId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptId {
    Commit = 0,
    AckUpTo,
    AckIds,
    Replay,
    Trim,
    SessionSet,
    SessionRefresh,
    SessionRemove,
}

/// Number of scripts.
pub(crate) const SCRIPT_COUNT: usize = 8;

/// A script's source and SHA-1 (what `EVALSHA` names).
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) source: String,
    pub(crate) sha: String,
}

/// All scripts with their hashes, built once per bridge.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) all: Vec<Script>,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_prelude = |body: &str| format!("{PRELUDE}{body}");
        let sources = [
            with_prelude(COMMIT),
            with_prelude(ACK_UP_TO),
            with_prelude(ACK_IDS),
            with_prelude(REPLAY),
            with_prelude(TRIM),
            SESSION_SET.to_owned(),
            SESSION_REFRESH.to_owned(),
            SESSION_REMOVE.to_owned(),
        ];
        let all = sources
            .into_iter()
            .map(|source| {
                let sha = redis::Script::new(&source).get_hash().to_owned();
                Script { source, sha }
            })
            .collect::<Vec<_>>();
        debug_assert_eq!(all.len(), SCRIPT_COUNT);
        Self { all }
    }

    pub(crate) fn sha(&self, id: ScriptId) -> &str {
        &self.all[id as usize].sha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = UserKeys::new("rtc", "alice@x");
        assert_eq!(k.keys[0], "rtc:{alice@x}:log");
        assert_eq!(k.keys[4], "rtc:{alice@x}:mid");
        assert!(k.keys.iter().all(|k| k.contains("{alice@x}")));
        assert_eq!(key("p", "u", "sess"), "p:{u}:sess");
    }

    #[test]
    fn scripts_have_distinct_hashes() {
        let s = Scripts::new();
        assert_eq!(s.all.len(), SCRIPT_COUNT);
        let mut shas: Vec<&str> = s.all.iter().map(|s| s.sha.as_str()).collect();
        shas.sort_unstable();
        shas.dedup();
        assert_eq!(shas.len(), SCRIPT_COUNT);
        assert!(s.sha(ScriptId::Commit).len() == 40);
    }
}
