//! The Redis store: every replica updates the same counters with one Lua script per call,
//! run atomically by Redis on its own clock (`TIME`), so N replicas enforce one limit and no
//! update is a read-modify-write from the gateway. Keys are
//! `{prefix}:throttle:{hex}` (the hashed scope; no identifier or address is stored), each
//! with a TTL: Redis forgets a counter when the rules do.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script};

use crate::throttle::config::RedisConfig;
use crate::throttle::store::{Counts, Hit, Key, Limits, Query, Scope, Store, StoreError};

/// Shared by the scripts: the server's clock in microseconds, and the bits of ARGV[1].
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mask = tonumber(ARGV[1])
local function has(b) return math.floor(mask / b) % 2 == 1 end
";

/// KEYS: pair, identifier, network, known, rate. ARGV: mask (1 pair, 2 identifier, 4 known,
/// 8 rate, 16 network counted), rate interval and burst, then threshold, window, base and cap
/// of the pair, identifier and network counters (microseconds). Returns {scope, wait, pair,
/// identifier, network}: scope 0 allowed (and counted), 1 identifier and network, 2
/// identifier, 3 network, 4 rate limit.
const ATTEMPT: &str = r"
local function wait(k)
  local b = tonumber(redis.call('HGET', k, 'b') or '0')
  if b > now then return b - now end
  return 0
end
local best, scope = 0, 0
local function consider(w, s)
  if w > best then best = w; scope = s end
end
if has(1) then consider(wait(KEYS[1]), 1) end
if has(2) and not (has(4) and redis.call('EXISTS', KEYS[4]) == 1) then
  consider(wait(KEYS[2]), 2)
end
if has(16) then consider(wait(KEYS[3]), 3) end
if scope > 0 then return {scope, best, 0, 0, 0} end
if has(8) then
  local interval = tonumber(ARGV[2])
  local burst = tonumber(ARGV[3])
  local tat = tonumber(redis.call('GET', KEYS[5]) or '0')
  if tat < now then tat = now end
  local tolerance = interval * (burst - 1)
  if tat - now > tolerance then return {4, tat - now - tolerance, 0, 0, 0} end
  tat = tat + interval
  redis.call('SET', KEYS[5], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local out = {0, 0}
local bits = {1, 2, 16}
for i = 1, 3 do
  if has(bits[i]) then
    local k = KEYS[i]
    local o = 3 + (i - 1) * 4
    local threshold = tonumber(ARGV[o + 1])
    local window = tonumber(ARGV[o + 2])
    local base = tonumber(ARGV[o + 3])
    local cap = tonumber(ARGV[o + 4])
    local f = redis.call('HINCRBY', k, 'f', 1)
    local b = tonumber(redis.call('HGET', k, 'b') or '0')
    if f >= threshold then
      local over = f - threshold
      if over > 40 then over = 40 end
      local d = base * (2 ^ over)
      if d > cap then d = cap end
      if now + d > b then
        b = now + d
        redis.call('HSET', k, 'b', string.format('%.0f', b))
      end
    end
    local keep = now + window
    if b > keep then keep = b end
    redis.call('PEXPIRE', k, math.ceil((keep - now) / 1000))
    out[#out + 1] = f
  else
    out[#out + 1] = 0
  end
end
return out
";

/// KEYS: pair, identifier, network, known. ARGV: mask (1 pair, 2 identifier, 16 network,
/// 32 delete pair and identifier, 64 mark known), the thresholds of pair, identifier and
/// network, how long a known network is remembered (ms). Gives one attempt back on each
/// counter (below the threshold no refusal stays), or deletes the identifier's counters.
const GIVE_BACK: &str = r"
local bits = {1, 2, 16}
for i = 1, 3 do
  if has(bits[i]) then
    local k = KEYS[i]
    if i < 3 and has(32) then
      redis.call('DEL', k)
    elseif redis.call('EXISTS', k) == 1 then
      local f = redis.call('HINCRBY', k, 'f', -1)
      if f <= 0 then
        redis.call('DEL', k)
      elseif f < tonumber(ARGV[1 + i]) then
        redis.call('HDEL', k, 'b')
      end
    end
  end
end
if has(64) then redis.call('SET', KEYS[4], '1', 'PX', ARGV[5]) end
return 1
";

pub struct RedisStore {
    conn: ConnectionManager,
    timeout: Duration,
    prefix: String,
    attempt: Script,
    give_back: Script,
}

impl RedisStore {
    /// Builds the client without connecting: the first call connects, and a Redis that is
    /// down at start-up is the fail mode's business, not a start error.
    pub fn new(config: &RedisConfig) -> Result<RedisStore, String> {
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("throttle.redis.url: {e}"))?;
        if let Some(path) = &config.password_file {
            let pw = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "{}: cannot read throttle.redis.password_file: {e}",
                    path.display()
                )
            })?;
            let pw = pw.trim();
            if pw.is_empty() {
                return Err(format!(
                    "{}: throttle.redis.password_file is empty",
                    path.display()
                ));
            }
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    format!(
                        "{}: cannot read throttle.redis.ca_file: {e}",
                        path.display()
                    )
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| format!("throttle.redis: {e}"))?;
        let timeout = config.timeout.get();
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("throttle.redis: {e}"))?;
        Ok(RedisStore {
            conn,
            timeout,
            prefix: config.key_prefix.clone(),
            attempt: Script::new(&format!("{PRELUDE}{ATTEMPT}")),
            give_back: Script::new(&format!("{PRELUDE}{GIVE_BACK}")),
        })
    }

    fn name(&self, key: &Key) -> String {
        format!("{}:throttle:{}", self.prefix, key.hex())
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError(format!("redis: {e}"))),
            Err(_) => Err(StoreError(format!(
                "redis: no answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

impl RedisStore {
    async fn give_back_call(&self, q: &Query, l: &Limits, success: bool) -> Result<(), StoreError> {
        let network = self.name(&q.network);
        let name = |k: Option<Key>| k.map_or_else(|| network.clone(), |k| self.name(&k));
        let known = q.known.filter(|_| success && l.remember > 0);
        let mask = u8::from(q.pair.is_some())
            | u8::from(q.identifier.is_some()) << 1
            | u8::from(q.count_network) << 4
            | u8::from(success) << 5
            | u8::from(known.is_some()) << 6;
        let mut inv = self.give_back.prepare_invoke();
        inv.key(name(q.pair))
            .key(name(q.identifier))
            .key(&network)
            .key(name(known))
            .arg(mask)
            .arg(l.pair.threshold)
            .arg(l.identifier.threshold)
            .arg(l.network.threshold)
            .arg((l.remember / 1000).max(1));
        let _: i64 = self.run(inv).await?;
        Ok(())
    }
}

impl Store for RedisStore {
    async fn attempt(&self, q: &Query, l: &Limits) -> Result<(Hit, Counts), StoreError> {
        let network = self.name(&q.network);
        let name = |k: Option<Key>| k.map_or_else(|| network.clone(), |k| self.name(&k));
        let rate = q.rate.zip(l.rate);
        let mask = u8::from(q.pair.is_some())
            | u8::from(q.identifier.is_some()) << 1
            | u8::from(q.known.is_some()) << 2
            | u8::from(rate.is_some()) << 3
            | u8::from(q.count_network) << 4;
        let (interval, burst) = rate.map_or((0, 0), |(_, r)| (r.interval, r.burst));
        let mut inv = self.attempt.prepare_invoke();
        inv.key(name(q.pair))
            .key(name(q.identifier))
            .key(&network)
            .key(name(q.known))
            .key(name(q.rate))
            .arg(mask)
            .arg(interval)
            .arg(burst);
        for limit in [&l.pair, &l.identifier, &l.network] {
            inv.arg(limit.threshold)
                .arg(limit.window)
                .arg(limit.base)
                .arg(limit.cap);
        }
        let out: Vec<i64> = self.run(inv).await?;
        let [scope, wait, pair, identifier, network] = out.as_slice() else {
            return Err(StoreError(format!(
                "redis: unexpected answer of {} values",
                out.len()
            )));
        };
        let count = |v: &i64| u32::try_from(*v).unwrap_or(0);
        let counts = Counts {
            pair: count(pair),
            identifier: count(identifier),
            network: count(network),
        };
        let scope = match scope {
            0 => return Ok((Hit::Allowed, counts)),
            1 => Scope::IdentifierAndNetwork,
            2 => Scope::Identifier,
            3 => Scope::Network,
            4 => Scope::RateLimit,
            other => return Err(StoreError(format!("redis: unexpected scope {other}"))),
        };
        let wait = u64::try_from(*wait).unwrap_or(0).max(1);
        Ok((Hit::Refused { scope, wait }, counts))
    }

    async fn refund(&self, q: &Query, l: &Limits) -> Result<(), StoreError> {
        self.give_back_call(q, l, false).await
    }

    async fn success(&self, q: &Query, l: &Limits) -> Result<(), StoreError> {
        self.give_back_call(q, l, true).await
    }
}
