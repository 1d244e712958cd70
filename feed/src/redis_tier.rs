//! The regional L2: timelines and post bodies in Redis, shared by the nodes of a region.
//!
//! Layout (every key under `prefix`, default `starling:`):
//! - `ft:{gen}:{user}`: sorted set, every score 0, members `hex(post id) ‖ hex(author)` (32
//!   characters), so lexical order is post-id order; capped by a Lua script that adds and trims
//!   in one step.
//! - `fm:{gen}:{user}`: the timeline's floor as 16 hex digits; its presence says the timeline
//!   exists. Both keys expire after the inactivity period; reads push the expiry back, so an
//!   inactive user's timeline disappears by itself and fan-out skips it.
//! - `fp:{post}`: a post body (JSON) with a TTL, deleted when the post changes.
//! - `fo:{post}`: which node fans a post out into Redis (`SET NX`), so the region's nodes do
//!   not all write the same entries.
//! - `fgen`: the timeline generation. A node that saw Redis fail bumps it when Redis is back,
//!   which orphans (and lets expire) every timeline that may have missed fan-out meanwhile.
//!
//! Health: the first failed call marks the tier down; while down, calls fail at once with
//! [`TierError::Unavailable`] without touching the network, and a background check pings every
//! half second until Redis answers again.

use crate::tier::{RegionalTier, TierError, TimelineStore};
use crate::timeline::{Entry, Timeline};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

const INSERT: &str = r"
local cap = tonumber(ARGV[3])
local n = 0
for i = 1, #KEYS, 2 do
  local floor = redis.call('GET', KEYS[i + 1])
  if floor and ARGV[2] >= floor then
    if redis.call('ZADD', KEYS[i], 0, ARGV[1]) == 1 then
      n = n + 1
      local ttl = redis.call('PTTL', KEYS[i + 1])
      if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
      local size = redis.call('ZCARD', KEYS[i])
      if size > cap then
        redis.call('ZREMRANGEBYRANK', KEYS[i], 0, size - cap - 1)
        local oldest = redis.call('ZRANGE', KEYS[i], 0, 0)[1]
        local f = string.sub(oldest, 1, 16)
        if f > floor then redis.call('SET', KEYS[i + 1], f, 'KEEPTTL') end
      end
    end
  end
end
return n
";

const REMOVE_AUTHOR: &str = r"
local all = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, m in ipairs(all) do
  if string.sub(m, 17) == ARGV[1] then redis.call('ZREM', KEYS[1], m); n = n + 1 end
end
return n
";

const RAISE_FLOOR: &str = r"
local floor = redis.call('GET', KEYS[1])
if floor and ARGV[1] > floor then redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
return 0
";

/// A Redis error as the tier's opaque backend error.
fn backend(e: redis::RedisError) -> TierError {
    TierError::Backend(Box::new(e))
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

fn member(e: Entry) -> String {
    format!("{:016x}{:016x}", e.0, e.1)
}

fn parse_member(m: &str) -> Result<Entry, TierError> {
    let bad = || TierError::Corrupt(format!("timeline member {m:?}"));
    if m.len() != 32 {
        return Err(bad());
    }
    let post = u64::from_str_radix(&m[..16], 16).map_err(|_| bad())?;
    let author = u64::from_str_radix(&m[16..], 16).map_err(|_| bad())?;
    Ok((post, author))
}

/// Settings of the Redis tier.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// Entries per timeline.
    pub cap: usize,
    /// A timeline not read for this long expires.
    pub inactive_after: Duration,
    /// How long a cached post body lives.
    pub post_ttl: Duration,
}

#[derive(Debug)]
struct Inner {
    conn: ConnectionManager,
    settings: RedisSettings,
    healthy: AtomicBool,
    gen_: AtomicU64,
    insert: Script,
    remove_author: Script,
    raise_floor: Script,
}

/// The Redis tier. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RedisTier {
    inner: Arc<Inner>,
}

impl RedisTier {
    /// Connects and checks that Redis answers; an unreachable server is an error here, once,
    /// at start.
    pub async fn connect(settings: RedisSettings) -> Result<Self, TierError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            Duration::from_secs(3),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| TierError::Unavailable)?
        .map_err(backend)?;
        let tier = RedisTier {
            inner: Arc::new(Inner {
                conn,
                settings,
                healthy: AtomicBool::new(true),
                gen_: AtomicU64::new(0),
                insert: Script::new(INSERT),
                remove_author: Script::new(REMOVE_AUTHOR),
                raise_floor: Script::new(RAISE_FLOOR),
            }),
        };
        let generation: Option<u64> = tier.conn().get(tier.key("fgen")).await.map_err(backend)?;
        tier.inner
            .gen_
            .store(generation.unwrap_or(0), Ordering::Relaxed);
        Ok(tier)
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.inner.settings.prefix)
    }

    fn tl_keys(&self, user: u64) -> (String, String) {
        let g = self.inner.gen_.load(Ordering::Relaxed);
        (
            self.key(&format!("ft:{g}:{user}")),
            self.key(&format!("fm:{g}:{user}")),
        )
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.inner.settings.inactive_after.as_millis()).unwrap_or(u64::MAX)
    }

    fn check(&self) -> Result<(), TierError> {
        if self.is_healthy() {
            Ok(())
        } else {
            Err(TierError::Unavailable)
        }
    }

    /// Runs a call, marking the tier down if it fails.
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, TierError>>,
    ) -> Result<T, TierError> {
        self.check()?;
        match f.await {
            Err(TierError::Backend(e)) => {
                if self.inner.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis unavailable: feed reads fall back to the local cache and rebuilds");
                }
                Err(TierError::Backend(e))
            }
            other => other,
        }
    }
}

#[async_trait]
impl TimelineStore for RedisTier {
    async fn load(&self, user: u64) -> Result<Option<Timeline>, TierError> {
        self.call(async {
            let (z, m) = self.tl_keys(user);
            let ttl = self.ttl_ms() as i64;
            let (floor, members): (Option<String>, Vec<String>) = redis::pipe()
                .get(&m)
                .zrange(&z, 0, -1)
                .pexpire(&z, ttl)
                .ignore()
                .pexpire(&m, ttl)
                .ignore()
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let Some(floor) = floor else {
                return Ok(None);
            };
            let floor = u64::from_str_radix(&floor, 16)
                .map_err(|_| TierError::Corrupt(format!("floor {floor:?}")))?;
            let entries = members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Timeline::from_entries(
                entries,
                floor,
                self.inner.settings.cap,
            )))
        })
        .await
    }

    async fn save(&self, user: u64, t: &Timeline) -> Result<(), TierError> {
        self.call(async {
            let (z, m) = self.tl_keys(user);
            let ttl = self.ttl_ms();
            let mut pipe = redis::pipe();
            pipe.atomic().del(&z).ignore();
            let members: Vec<(u8, String)> = t.entries().map(|e| (0, member(*e))).collect();
            if !members.is_empty() {
                pipe.zadd_multiple(&z, &members)
                    .ignore()
                    .pexpire(&z, ttl as i64)
                    .ignore();
            }
            pipe.pset_ex(&m, hex(t.floor), ttl).ignore();
            pipe.query_async::<()>(&mut self.conn())
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn insert(&self, users: &[u64], post: u64, author: u64) -> Result<usize, TierError> {
        if users.is_empty() {
            return Ok(0);
        }
        self.call(async {
            let mut taken = 0usize;
            for chunk in users.chunks(512) {
                let mut inv = self.inner.insert.prepare_invoke();
                for u in chunk {
                    let (z, m) = self.tl_keys(*u);
                    inv.key(z).key(m);
                }
                inv.arg(member((post, author)))
                    .arg(hex(post))
                    .arg(self.inner.settings.cap);
                let n: usize = inv.invoke_async(&mut self.conn()).await.map_err(backend)?;
                taken += n;
            }
            Ok(taken)
        })
        .await
    }

    async fn raise_floor(&self, user: u64, floor: u64) -> Result<(), TierError> {
        self.call(async {
            let (_, m) = self.tl_keys(user);
            self.inner
                .raise_floor
                .key(m)
                .arg(hex(floor))
                .invoke_async::<()>(&mut self.conn())
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn remove_author(&self, user: u64, author: u64) -> Result<(), TierError> {
        self.call(async {
            let (z, _) = self.tl_keys(user);
            self.inner
                .remove_author
                .key(z)
                .arg(hex(author))
                .invoke_async::<()>(&mut self.conn())
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn forget(&self, user: u64) -> Result<(), TierError> {
        self.call(async {
            let (z, m) = self.tl_keys(user);
            self.conn().del::<_, ()>(&[z, m]).await.map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl RegionalTier for RedisTier {
    /// Whether the tier is currently used.
    fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Pings Redis every half second: brings the tier back (with a new timeline generation)
    /// after an outage, and picks up generations bumped by other nodes.
    async fn watch_health(&self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let mut conn = self.conn();
            if self.is_healthy() {
                if let Ok(Some(g)) = conn.get::<_, Option<u64>>(self.key("fgen")).await {
                    self.inner.gen_.fetch_max(g, Ordering::Relaxed);
                }
                continue;
            }
            let back: Result<u64, redis::RedisError> = conn.incr(self.key("fgen"), 1u64).await;
            if let Ok(g) = back {
                self.inner.gen_.store(g, Ordering::Relaxed);
                self.inner.healthy.store(true, Ordering::Relaxed);
                tracing::info!(
                    generation = g,
                    "redis is back; timelines start a new generation"
                );
            }
        }
    }

    /// Claims the fan-out of `post` into Redis for `node`; true if this node should do it
    /// (it won the claim now, or had won it before a restart).
    async fn claim_fan_out(&self, post: u64, node: u64) -> Result<bool, TierError> {
        self.call(async {
            let key = self.key(&format!("fo:{post}"));
            let mut conn = self.conn();
            let won: bool = redis::cmd("SET")
                .arg(&key)
                .arg(node)
                .arg("NX")
                .arg("EX")
                .arg(86_400)
                .query_async::<Option<String>>(&mut conn)
                .await
                .map_err(backend)?
                .is_some();
            if won {
                return Ok(true);
            }
            let owner: Option<u64> = conn.get(&key).await.map_err(backend)?;
            Ok(owner == Some(node))
        })
        .await
    }

    /// Pushes back the expiry of `user`'s timeline (the user is reading).
    async fn touch(&self, user: u64) -> Result<(), TierError> {
        self.call(async {
            let (z, m) = self.tl_keys(user);
            let ttl = self.ttl_ms();
            redis::pipe()
                .pexpire(&z, ttl as i64)
                .ignore()
                .pexpire(&m, ttl as i64)
                .ignore()
                .query_async::<()>(&mut self.conn())
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Cached post bodies (JSON) for `ids`, `None` where not cached.
    async fn posts(&self, ids: &[u64]) -> Result<Vec<Option<Vec<u8>>>, TierError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.call(async {
            let keys: Vec<String> = ids.iter().map(|i| self.key(&format!("fp:{i}"))).collect();
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&keys);
            cmd.query_async(&mut self.conn()).await.map_err(backend)
        })
        .await
    }

    /// Caches post bodies.
    async fn put_posts(&self, bodies: &[(u64, Vec<u8>)]) -> Result<(), TierError> {
        if bodies.is_empty() {
            return Ok(());
        }
        self.call(async {
            let ttl = self.inner.settings.post_ttl.as_secs().max(1);
            let mut pipe = redis::pipe();
            for (id, body) in bodies {
                pipe.set_ex(self.key(&format!("fp:{id}")), body.as_slice(), ttl)
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.conn())
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Drops a cached post body (the post was edited or deleted).
    async fn forget_post(&self, id: u64) -> Result<(), TierError> {
        self.call(async {
            self.conn()
                .del::<_, ()>(self.key(&format!("fp:{id}")))
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
