//! Redis, the speed layer: the last price per symbol, written in pipelined batches and guarded
//! on event time so that a replay never replaces a newer value with an older one.

use redis::aio::ConnectionManager;

use crate::error::Error;

/// Key prefix of last prices: `price:<SYMBOL>`.
pub const PRICE_PREFIX: &str = "price:";

/// Sets `price:<SYMBOL>` (and its `:time_ns` and `:order` companions) only when the trade is
/// newer in `(time_ns, seq)` order, then publishes the update on `updates:<SYMBOL>`; atomic per
/// symbol. The order is compared as zero-padded text (`ARGV[4]`): Lua's numbers are doubles,
/// which cannot tell nanosecond times apart.
const GUARDED_PRICE: &str = r"
local held = redis.call('GET', KEYS[4]) or ''
if ARGV[4] > held then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[4], ARGV[4])
  redis.call('PUBLISH', KEYS[3], ARGV[3])
  return 1
end
return 0
";

/// The text that orders trades in the price guard: `(time_ns, seq)` as fixed-width digits.
///
/// ```
/// use gostocks_connectors::redis::price_order;
/// assert!(price_order(10, 2) > price_order(10, 1));
/// assert!(price_order(11, 0) > price_order(10, 99));
/// assert!(price_order(1_717_421_401_084_713_921, 0) > price_order(1_717_421_401_084_713_920, 0));
/// ```
pub fn price_order(time_ns: i64, seq: u64) -> String {
    format!("{:020}:{seq:020}", time_ns.max(0))
}

/// Sets the hash `KEYS[1]` to the field/value pairs `ARGV[4..]` only when the event time
/// `ARGV[1]` is newer than its `time_ns` field, publishes `ARGV[3]` on `KEYS[2]`, and sets a TTL
/// of `ARGV[2]` seconds when positive; atomic per key.
const GUARDED_HASH: &str = r"
local t = tonumber(redis.call('HGET', KEYS[1], 'time_ns') or '-1')
if tonumber(ARGV[1]) > t then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
return 0
";

/// Key prefix of window stats hashes: `stats:<SYMBOL>:<window>`.
pub const STATS_PREFIX: &str = "stats:";
/// Key prefix of bar hashes: `bar:<SYMBOL>:<size>` (the latest final bar).
pub const BAR_PREFIX: &str = "bar:";
/// Channel prefix of live updates: `updates:<SYMBOL>`.
pub const UPDATES_PREFIX: &str = "updates:";

/// A hash update for [`RedisSink::write_hashes`]: the whole hash at one event time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashUpdate {
    /// The key without the sink's prefix, e.g. `stats:AAPL:60s`.
    pub key: String,
    /// The symbol (for the `updates:<SYMBOL>` channel).
    pub symbol: String,
    /// The event time that orders updates of this key; stored as the `time_ns` field.
    pub time_ns: i64,
    /// The other fields, as text.
    pub fields: Vec<(String, String)>,
}

/// A price update for [`RedisSink::write_prices`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceUpdate {
    /// Symbol.
    pub symbol: String,
    /// Exact decimal text.
    pub price: String,
    /// Event time of the trade.
    pub time_ns: i64,
    /// Sequence number of the trade (orders trades of equal time).
    pub seq: u64,
}

/// Writes the speed layer. `prefix` namespaces every key (tests use a fresh one each).
#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
    hash_script: redis::Script,
    ttl_secs: u64,
}

impl RedisSink {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`, or `rediss://host:6380` for TLS,
    /// trusting the system's and the Mozilla roots); keys are written under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisSink, Error> {
        RedisSink::connect_with_ca(url, prefix, None).await
    }

    /// [`RedisSink::connect`]; a `rediss://` server's certificate must be signed by a CA of
    /// `ca_file` (PEM), if given.
    pub async fn connect_with_ca(
        url: &str,
        prefix: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<RedisSink, Error> {
        let err = |context: &str| {
            let context = context.to_owned();
            move |source| Error::Redis { context, source }
        };
        // rediss:// uses rustls with the process's crypto provider: ring, as everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match ca_file {
            None => redis::Client::open(url).map_err(err("parsing the redis url"))?,
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url, certs)
                    .map_err(err("parsing the redis url and the CA file"))?
            }
        };
        let conn = ConnectionManager::new(client)
            .await
            .map_err(err("connecting"))?;
        let sink = RedisSink {
            conn,
            prefix: prefix.to_owned(),
            script: redis::Script::new(GUARDED_PRICE),
            hash_script: redis::Script::new(GUARDED_HASH),
            ttl_secs: 0,
        };
        sink.load_script().await?;
        Ok(sink)
    }

    /// Pipelines call scripts by hash, so the script must be in Redis's cache: loaded at connect
    /// and again after a Redis restart empties the cache.
    async fn load_script(&self) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        for script in [GUARDED_PRICE, GUARDED_HASH] {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script)
                .query_async::<String>(&mut conn)
                .await
                .map_err(|source| Error::Redis {
                    context: "loading the guarded-write scripts".into(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Hashes written by [`RedisSink::write_hashes`] expire `secs` after their last update
    /// (0: never).
    pub fn with_ttl(mut self, secs: u64) -> RedisSink {
        self.ttl_secs = secs;
        self
    }

    /// Writes whole hashes in one pipelined round trip, each only if newer than what Redis
    /// holds (guarded on `time_ns`, atomically), publishing each applied update on
    /// `updates:<SYMBOL>`; returns how many were applied.
    pub async fn write_hashes(&self, updates: &[HashUpdate]) -> Result<usize, Error> {
        self.write(&[], updates).await
    }

    /// [`RedisSink::write_prices`] and [`RedisSink::write_hashes`] in one pipelined round trip;
    /// returns how many updates were applied. The hashes go first: a stats row, written once
    /// per grid time, does not wait behind the prices of every symbol that traded.
    pub async fn write(
        &self,
        prices: &[PriceUpdate],
        hashes: &[HashUpdate],
    ) -> Result<usize, Error> {
        if prices.is_empty() && hashes.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        self.add_hashes(&mut pipe, hashes);
        self.add_prices(&mut pipe, prices);
        let context = match (prices.is_empty(), hashes.is_empty()) {
            (false, true) => "writing prices",
            (true, false) => "writing hashes",
            _ => "writing prices and hashes",
        };
        self.run_guarded(&pipe, context).await
    }

    /// The guarded writes of `updates`, added to `pipe`.
    fn add_hashes(&self, pipe: &mut redis::Pipeline, updates: &[HashUpdate]) {
        for u in updates {
            let mut msg = serde_json::Map::new();
            msg.insert("key".into(), u.key.clone().into());
            msg.insert("time_ns".into(), u.time_ns.into());
            for (f, v) in &u.fields {
                msg.insert(f.clone(), v.clone().into());
            }
            let mut inv = self.hash_script.key(format!("{}{}", self.prefix, u.key));
            inv.key(format!("{}{UPDATES_PREFIX}{}", self.prefix, u.symbol))
                .arg(u.time_ns)
                .arg(self.ttl_secs)
                .arg(serde_json::Value::Object(msg).to_string())
                .arg("time_ns")
                .arg(u.time_ns);
            for (f, v) in &u.fields {
                inv.arg(f).arg(v);
            }
            pipe.invoke_script(&inv);
        }
    }

    /// Reads a hash written by [`RedisSink::write_hashes`] (`None` if absent).
    pub async fn read_hash(&self, key: &str) -> Result<Option<Vec<(String, String)>>, Error> {
        let mut conn = self.conn.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(format!("{}{key}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|source| Error::Redis {
                context: "reading a hash".into(),
                source,
            })?;
        Ok((!fields.is_empty()).then_some(fields))
    }

    /// The key of a symbol's last price.
    pub fn price_key(&self, symbol: &str) -> String {
        format!("{}{PRICE_PREFIX}{symbol}", self.prefix)
    }

    /// Writes a batch in one pipelined round trip; returns how many updates were newer than
    /// what Redis held.
    pub async fn write_prices(&self, updates: &[PriceUpdate]) -> Result<usize, Error> {
        self.write(updates, &[]).await
    }

    /// The guarded writes of `updates`, added to `pipe`.
    fn add_prices(&self, pipe: &mut redis::Pipeline, updates: &[PriceUpdate]) {
        for u in updates {
            let key = self.price_key(&u.symbol);
            let channel = format!("{}updates:{}", self.prefix, u.symbol);
            let msg =
                serde_json::json!({"symbol": u.symbol, "price": u.price, "time_ns": u.time_ns})
                    .to_string();
            pipe.invoke_script(
                self.script
                    .key(&key)
                    .key(format!("{key}:time_ns"))
                    .key(channel)
                    .key(format!("{key}:order"))
                    .arg(&u.price)
                    .arg(u.time_ns)
                    .arg(msg)
                    .arg(price_order(u.time_ns, u.seq)),
            );
        }
    }

    /// Runs a pipeline of guarded-write scripts (reloading them if Redis restarted and forgot
    /// them); returns how many writes were applied.
    async fn run_guarded(&self, pipe: &redis::Pipeline, context: &str) -> Result<usize, Error> {
        let mut conn = self.conn.clone();
        let mut result = pipe.query_async::<Vec<i64>>(&mut conn).await;
        if result
            .as_ref()
            .is_err_and(|e| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
        {
            self.load_script().await?;
            result = pipe.query_async::<Vec<i64>>(&mut conn).await;
        }
        let applied = result.map_err(|source| Error::Redis {
            context: context.into(),
            source,
        })?;
        Ok(applied.iter().filter(|&&a| a == 1).count())
    }

    /// Reads the last prices of `symbols` in one pipelined round trip.
    pub async fn read_prices(&self, symbols: &[&str]) -> Result<Vec<Option<(String, i64)>>, Error> {
        let mut pipe = redis::pipe();
        for s in symbols {
            let key = self.price_key(s);
            pipe.get(&key).get(format!("{key}:time_ns"));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<(Option<String>, Option<i64>)> = pipe
            .query_async::<Vec<Option<String>>>(&mut conn)
            .await
            .map_err(|source| Error::Redis {
                context: "reading prices".into(),
                source,
            })?
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].as_deref().and_then(|t| t.parse().ok())))
            .collect();
        Ok(raw.into_iter().map(|(p, t)| p.zip(t)).collect())
    }
}
