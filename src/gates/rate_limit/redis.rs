//! The Redis rate store: every instance sharing one Redis enforces one limit.
//!
//! A Lua script ([`GCRA_SCRIPT`]) decides all the limits of a request
//! atomically, with Redis's own clock (`TIME`), so instances with skewed
//! clocks still agree. Each serving thread sends the requests waiting at the
//! same moment in one call ([`RedisStore`]): one round trip per request at
//! low load, far fewer under load. Keys are prefixed and expire
//! when their limit is fully available again, so Redis holds only active
//! callers.
//!
//! Every call is bounded by a short timeout (50 ms by default) and guarded
//! by a [`Breaker`]: a dead or slow Redis never stalls a request. While
//! Redis cannot answer, each route's [`OnStoreError`] decides: this
//! instance's memory counters, admit, or refuse with 503. The connection is
//! re-established in the background and Redis is used again as soon as a
//! probe succeeds. Going down and coming back are security events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo as _, Script};
use tokio::sync::{mpsc, oneshot};

use super::breaker::Breaker;
use super::gcra::Outcome;
use super::lease::{LEASE_TTL, Leases};
use super::memory::MemoryStore;
use super::store::{Check, Decision, OnStoreError, Outcomes, StoreHealth, StoreUnavailable, decide_locally};
use crate::audit::{self, SecurityEvent};
use crate::config::secrets::Secret;

/// GCRA over several keys in one atomic step. `KEYS[i]` is a counter;
/// `ARGV[5i-4..5i]` its interval (µs), burst, cost, mode and lease. Mode
/// `1` counts an admitted request, `0` only looks, `r` gives back `cost`
/// unused leased tokens. With mode `1`, up to `lease` more tokens are
/// reserved for the caller, at most a quarter of what is left
/// ([`super::lease`]). Returns five numbers per key: admitted (1/0),
/// remaining (leased tokens included), reset (µs), retry-after (µs) and the
/// tokens leased. The same arithmetic as [`super::gcra::decide`], taken key
/// after key; a key named several times (a batch of requests from one
/// caller) is read once and written once, with its final value.
pub const GCRA_SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tats = {}
local changed = {}
local result = {}
for i, key in ipairs(KEYS) do
  local base = (i - 1) * 5
  local interval = tonumber(ARGV[base + 1])
  local burst = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local mode = ARGV[base + 4]
  local tolerance = burst * interval
  local tat = tats[key]
  if tat == nil then tat = tonumber(redis.call('GET', key)) or now end
  if mode == 'r' then
    tats[key] = tat - cost * interval
    changed[key] = true
    for _ = 1, 5 do result[#result + 1] = 0 end
  else
    if tat < now then tat = now end
    tats[key] = tat
    local new_tat = tat + cost * interval
    if new_tat - now <= tolerance then
      local remaining = math.floor((tolerance - (new_tat - now)) / interval)
      local leased = 0
      if mode == '1' then
        leased = math.min(tonumber(ARGV[base + 5]), math.floor(remaining / 4))
        tats[key] = new_tat + leased * interval
        changed[key] = true
      end
      result[#result + 1] = 1
      result[#result + 1] = remaining
      result[#result + 1] = new_tat + leased * interval - now
      result[#result + 1] = 0
      result[#result + 1] = leased
    else
      result[#result + 1] = 0
      result[#result + 1] = math.floor(math.max(0, tolerance - (tat - now)) / interval)
      result[#result + 1] = tat - now
      result[#result + 1] = new_tat - now - tolerance
      result[#result + 1] = 0
    end
  end
end
for key in pairs(changed) do
  local tat = tats[key]
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  else
    redis.call('DEL', key)
  end
end
return result
";

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db` or `rediss://…` (TLS), without a password.
    pub url: String,
    /// The password (`PORTCULLIS_REDIS_PASSWORD`), if any.
    pub password: Option<Secret>,
    /// Prefix of every key (default `portcullis:rl:`).
    pub key_prefix: String,
    /// Longest wait for one decision.
    pub timeout: Duration,
    /// Most tokens leased per key and round trip (0: none; see [`super::lease`]).
    pub lease: u32,
}

impl RedisSettings {
    /// The client for these settings (no connection yet).
    pub fn client(&self) -> Result<Client, String> {
        let info = self.url.as_str().into_connection_info().map_err(|e| format!("bad Redis URL: {e}"))?;
        let info = match &self.password {
            Some(password) => {
                let settings = info.redis_settings().clone().set_password(password.expose());
                info.set_redis_settings(settings)
            }
            None => info,
        };
        Client::open(info).map_err(|e| format!("bad Redis URL: {e}"))
    }
}

/// Consecutive failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 3;
/// How long the breaker stays open before a probe.
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(1);
/// Most requests decided by one script call.
const MAX_BATCH: usize = 256;

/// A Redis connection of one serving thread, its breaker and fallback.
///
/// Requests of the thread hand their checks to one driver task, which sends
/// the checks of every request waiting at that moment in one script call
/// (a *group commit*): one request alone costs one round trip as before,
/// while under load one round trip decides many requests. The script takes
/// the keys in order, so a batch decides exactly as the same calls one
/// after the other would.
pub struct RedisStore {
    queue: mpsc::UnboundedSender<Ask>,
    link: Arc<Link>,
    fallback: Arc<MemoryStore>,
}

/// What the driver shares with the requests.
struct Link {
    connection: ConnectionManager,
    script: Script,
    key_prefix: String,
    timeout: Duration,
    breaker: Breaker,
    health: Arc<StoreHealth>,
    leases: Leases,
}

/// One request's checks, waiting for the driver.
struct Ask {
    checks: Arc<[Check]>,
    reply: oneshot::Sender<Result<Vec<Outcome>, ()>>,
}

impl RedisStore {
    /// A store on `client`; connects lazily; leases for at most
    /// `max_keys` keys. Its driver task runs on the current Tokio runtime.
    pub fn new(
        client: Client,
        settings: &RedisSettings,
        fallback: Arc<MemoryStore>,
        health: Arc<StoreHealth>,
        max_keys: usize,
    ) -> Result<Self, String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("cannot use Redis: {e}"))?;
        let link = Arc::new(Link {
            connection,
            script: Script::new(GCRA_SCRIPT),
            key_prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            breaker: Breaker::new(BREAKER_THRESHOLD, BREAKER_COOL_DOWN),
            health,
            leases: Leases::new(settings.lease, max_keys),
        });
        let (queue, asks) = mpsc::unbounded_channel();
        tokio::spawn(drive(asks, link.clone()));
        Ok(Self { queue, link, fallback })
    }

    /// Decides `checks`, by Redis or else by `on_error`.
    pub fn decide(self: &Arc<Self>, checks: Vec<Check>, on_error: OnStoreError) -> Decision {
        if self.link.leases.enabled()
            && let Some(outcomes) = self.link.leases.take(&checks, Instant::now())
        {
            return Decision::Ready(Ok(outcomes));
        }
        if !self.link.breaker.try_acquire() {
            return Decision::Ready(self.fall_back(&checks, on_error));
        }
        let checks: Arc<[Check]> = checks.into();
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Ask { checks: checks.clone(), reply }).is_err() {
            return Decision::Ready(self.fall_back(&checks, on_error));
        }
        let store = self.clone();
        // The call ahead of this request's own, and its own: each bounded by the timeout.
        let wait = store.link.timeout * 2;
        Decision::Pending(Box::pin(async move {
            match tokio::time::timeout(wait, answer).await {
                Ok(Ok(Ok(outcomes))) => Ok(outcomes),
                _ => store.fall_back(&checks, on_error),
            }
        }))
    }

    fn fall_back(&self, checks: &[Check], on_error: OnStoreError) -> Outcomes {
        self.link.health.fell_back();
        match on_error {
            OnStoreError::Local => Ok(decide_locally(&self.fallback, checks)),
            OnStoreError::Allow => Ok(Vec::new()),
            OnStoreError::Deny => Err(StoreUnavailable),
        }
    }
}

/// The driver: takes every request waiting, decides them in one call while
/// the next batch forms, and so on; gives back expired leases; ends when
/// the thread's store is dropped, giving back every lease.
async fn drive(mut asks: mpsc::UnboundedReceiver<Ask>, link: Arc<Link>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut sweep = tokio::time::interval(LEASE_TTL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = asks.recv_many(&mut batch, MAX_BATCH) => match received {
                0 => break,
                _ => link.decide(&mut batch).await,
            },
            _ = sweep.tick(), if link.leases.enabled() => link.give_back(Instant::now()).await,
        }
    }
    link.give_back(Instant::now() + LEASE_TTL).await;
}

/// One key of a script call.
struct Line<'a> {
    key: &'a str,
    limit: super::gcra::Limit,
    cost: u32,
    mode: &'static str,
    lease: u32,
}

impl<'a> Line<'a> {
    /// Decides `check`, asking for `lease` more tokens.
    fn decide(check: &'a Check, lease: u32) -> Self {
        let mode = if check.commit { "1" } else { "0" };
        Self { key: &check.key, limit: check.limit, cost: check.cost, mode, lease }
    }
}

impl Link {
    /// Decides a batch in one call and answers each request, emptying `batch`.
    /// With leasing, the first check of each key in the batch also asks for
    /// tokens, which this thread then holds.
    async fn decide(&self, batch: &mut Vec<Ask>) {
        let checks = || batch.iter().flat_map(|ask| ask.checks.iter());
        let lines: Vec<Line<'_>> = match self.leases.enabled() {
            false => checks().map(|check| Line::decide(check, 0)).collect(),
            true => {
                let mut asked = HashSet::new();
                checks()
                    .map(|check| {
                        let lease = if asked.insert(check.key.as_str()) { self.leases.ask_for(check) } else { 0 };
                        Line::decide(check, lease)
                    })
                    .collect()
            }
        };
        match tokio::time::timeout(self.timeout, self.ask(&lines)).await {
            Ok(Ok(answers)) => {
                self.succeeded();
                let now = Instant::now();
                for (check, (outcome, leased)) in checks().zip(&answers) {
                    self.leases.grant(check, *leased, outcome, now);
                }
                let mut outcomes = answers.into_iter().map(|(outcome, _)| outcome);
                for ask in batch.drain(..) {
                    let _ = ask.reply.send(Ok(outcomes.by_ref().take(ask.checks.len()).collect()));
                }
            }
            Ok(Err(error)) => self.failed(&error.to_string(), batch),
            Err(_) => self.failed("timed out", batch),
        }
    }

    /// One script call for `lines`, in order: each outcome with the tokens leased.
    async fn ask(&self, lines: &[Line<'_>]) -> redis::RedisResult<Vec<(Outcome, u32)>> {
        let mut invocation = self.script.prepare_invoke();
        for line in lines {
            invocation
                .key(format!("{}{}", self.key_prefix, line.key))
                .arg(u64::try_from(line.limit.interval.as_micros()).unwrap_or(u64::MAX).max(1))
                .arg(line.limit.burst.max(1))
                .arg(line.cost)
                .arg(line.mode)
                .arg(line.lease);
        }
        let mut connection = self.connection.clone();
        let numbers: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        if numbers.len() != lines.len() * 5 {
            return Err(redis::RedisError::from((redis::ErrorKind::Parse, "unexpected rate-limit script reply")));
        }
        Ok(numbers.chunks_exact(5).map(|n| (outcome(n), u32::try_from(n[4].max(0)).unwrap_or(0))).collect())
    }

    /// Gives back the unused tokens of leases ended by `now`, in one call.
    /// A failed call loses them: Redis then counts them as spent, which
    /// never admits more than the limit.
    async fn give_back(&self, now: Instant) {
        let refunds = self.leases.expire(now);
        if refunds.is_empty() {
            return;
        }
        let lines: Vec<Line<'_>> =
            refunds.iter().map(|r| Line { key: &r.key, limit: r.limit, cost: r.tokens, mode: "r", lease: 0 }).collect();
        if let Ok(Err(error)) = tokio::time::timeout(self.timeout, self.ask(&lines)).await {
            tracing::debug!(%error, "cannot give back leased rate-limit tokens");
        }
    }

    fn succeeded(&self) {
        self.breaker.success();
        self.health.decided();
        if self.health.mark_up() {
            tracing::info!("the Redis rate-limit store answers again; limits are shared again");
            audit::emit_system(&SecurityEvent::RateLimitStoreRecovered);
        }
    }

    /// The call failed: every request of `batch` falls back.
    fn failed(&self, error: &str, batch: &mut Vec<Ask>) {
        self.breaker.failure();
        self.health.failed();
        if self.breaker.is_open() && self.health.mark_down() {
            tracing::error!(%error, "the Redis rate-limit store does not answer; using the failure policy");
            audit::emit_system(&SecurityEvent::RateLimitStoreUnavailable { error: error.to_owned() });
        }
        for ask in batch.drain(..) {
            let _ = ask.reply.send(Err(()));
        }
    }
}

/// One key's four numbers from the script as an [`Outcome`].
fn outcome(numbers: &[i64]) -> Outcome {
    let seconds_up = |micros: i64| u64::try_from(micros.max(0)).unwrap_or(0).div_ceil(1_000_000);
    let allowed = numbers[0] == 1;
    Outcome {
        allowed,
        remaining: u32::try_from(numbers[1].max(0)).unwrap_or(u32::MAX),
        reset_after: seconds_up(numbers[2]),
        retry_after: if allowed { 0 } else { seconds_up(numbers[3]).max(1) },
    }
}
