//! `--scale`'s raw-driver listings: the rows storekit filled, read on the same database with
//! the raw driver, from storekit's own tables (their names and columns are those of
//! `backend-sql`'s migrations and table layout, and of `backend-dynamodb`'s kv shards and
//! tables), so that each row compares storekit's reading with the driver's on the same data.
//!
//! What a hand-written program would send to read it all, and nothing storekit adds:
//! - SQL: one statement streamed to its end (`SELECT key … ORDER BY key` with the expiry test,
//!   `SELECT version, document … ORDER BY sort_key`), where storekit sends one per page;
//! - DynamoDB: the Query pages of each partition, followed to the last, consistent as
//!   storekit's are. A namespace's keys are spread over the kv table's shards (16 partitions):
//!   the 16 shards are read at once, as storekit's listing does, but counted without merging
//!   them into key order, which is work storekit's answer needs and a count does not.
//!
//! Keys are read as owned strings, and records parsed into `Event`s, as storekit hands them
//! out, and every record's order in the partition is checked by both peers.

use storekit::{BoxError, async_trait};

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "dynamodb"))]
use crate::listing::Ascending;
#[cfg(any(feature = "postgres", feature = "dynamodb"))]
use crate::listing::Event;

/// What the raw driver of a backend reads for `--scale`'s listings.
#[async_trait]
pub(crate) trait RawListings: Send + Sync {
    /// Every live key of `namespace` in storekit's kv table; how many.
    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError>;
    /// Every record of `partition` in storekit's table `table` (its declared name), in sort-key
    /// order, each read as an [`Event`](crate::listing::Event); how many.
    async fn read_partition(&self, table: &str, partition: &str) -> Result<u64, BoxError>;
}

/// A read-only rusqlite connection to storekit's database file.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub(crate) struct Sqlite {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// storekit's table prefix.
    prefix: String,
}

#[cfg(feature = "sqlite")]
impl Sqlite {
    pub(crate) fn open(path: &std::path::Path, prefix: &str) -> Result<Self, BoxError> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        // Memory-mapped reads, as storekit's connections have by default.
        conn.pragma_update(None, "mmap_size", 2_i64 << 30)?;
        Ok(Self {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            prefix: prefix.to_owned(),
        })
    }

    /// Runs `f` on the connection on a blocking thread, as async code must run rusqlite.
    async fn read(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<u64, BoxError> + Send + 'static,
    ) -> Result<u64, BoxError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            f(&conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner))
        })
        .await?
    }
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl RawListings for Sqlite {
    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        // The names are the bench's own (`bench_<pid>_`), never outside input.
        let sql = format!(
            "SELECT key FROM \"{}kv\" WHERE namespace = ?1 \
             AND (expires_at IS NULL OR expires_at > ?2) ORDER BY key",
            self.prefix
        );
        let namespace = namespace.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare(&sql)?;
            let now = storekit::now().timestamp_millis();
            let mut rows = statement.query(rusqlite::params![namespace, now])?;
            let mut count = 0;
            while let Some(row) = rows.next()? {
                std::hint::black_box(row.get::<_, String>(0)?);
                count += 1;
            }
            Ok(count)
        })
        .await
    }

    async fn read_partition(&self, table: &str, partition: &str) -> Result<u64, BoxError> {
        let sql = format!(
            "SELECT version, document FROM \"{}{table}\" WHERE partition_key = ?1 \
             ORDER BY sort_key",
            self.prefix
        );
        let partition = partition.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare(&sql)?;
            let mut rows = statement.query([partition])?;
            let mut ascending = Ascending::default();
            while let Some(row) = rows.next()? {
                std::hint::black_box(row.get::<_, i64>(0)?);
                ascending.add(&serde_json::from_str(row.get_ref(1)?.as_str()?)?)?;
            }
            Ok(ascending.count)
        })
        .await
    }
}

/// An sqlx pool of one connection working in storekit's schema.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) struct Postgres {
    pool: sqlx::PgPool,
}

#[cfg(feature = "postgres")]
impl Postgres {
    pub(crate) async fn connect(url: &str, schema: &str) -> Result<Self, BoxError> {
        use std::str::FromStr as _;
        let options =
            sqlx::postgres::PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[cfg(feature = "postgres")]
#[async_trait]
impl RawListings for Postgres {
    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        use storekit::futures::TryStreamExt as _;
        const KEYS: &str = "SELECT key FROM kv WHERE namespace = $1 \
                            AND (expires_at IS NULL OR expires_at > $2) ORDER BY key";
        let keys = sqlx::query_scalar::<_, String>(KEYS)
            .bind(namespace)
            .bind(storekit::now().timestamp_millis())
            .fetch(&self.pool);
        Ok(keys.try_fold(0, |n, _key| async move { Ok(n + 1) }).await?)
    }

    async fn read_partition(&self, table: &str, partition: &str) -> Result<u64, BoxError> {
        use storekit::futures::StreamExt as _;
        // The table's name is the bench's own, never outside input.
        let sql = format!(
            "SELECT version, document FROM \"{table}\" WHERE partition_key = $1 \
             ORDER BY sort_key"
        );
        let mut rows =
            sqlx::query_as::<_, (i64, sqlx::types::Json<Event>)>(sqlx::AssertSqlSafe(sql))
                .bind(partition)
                .fetch(&self.pool);
        let mut ascending = Ascending::default();
        while let Some(row) = rows.next().await {
            let (version, event) = row?;
            std::hint::black_box(version);
            ascending.add(&event.0)?;
        }
        Ok(ascending.count)
    }
}

/// The SDK's client on storekit's tables.
#[cfg(feature = "dynamodb")]
#[derive(Debug)]
pub(crate) struct Dynamo {
    client: aws_sdk_dynamodb::Client,
    /// storekit's table prefix.
    prefix: String,
}

#[cfg(feature = "dynamodb")]
type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

#[cfg(feature = "dynamodb")]
impl Dynamo {
    pub(crate) fn new(client: aws_sdk_dynamodb::Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
        }
    }

    /// Every item of the partition `value` of `attribute` in `table`, page by page to `each`.
    async fn query_partition(
        &self,
        table: &str,
        attribute: &str,
        value: String,
        projection: Option<&str>,
        mut each: impl FnMut(&Item) -> Result<(), BoxError> + Send,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let query = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", attribute)
            .expression_attribute_values(":p", AttributeValue::S(value))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true);
        let mut start = None;
        loop {
            let output = query.clone().set_exclusive_start_key(start).send().await?;
            output.items().iter().try_for_each(&mut each)?;
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(()),
            }
        }
    }
}

#[cfg(feature = "dynamodb")]
#[async_trait]
impl RawListings for Dynamo {
    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        use storekit::futures::{StreamExt as _, TryStreamExt as _, stream};
        let shards = storekit::DynamoDbConfig::DEFAULT_SHARDS;
        let table = format!("{}kv", self.prefix);
        let now = storekit::now().timestamp_millis();
        stream::iter(0..shards)
            .map(|shard| {
                let table = &table;
                async move {
                    let mut count = 0;
                    // storekit's shard partition `{namespace}#{shard}`, its key `sk`, and its
                    // deadline `exp` in Unix milliseconds.
                    let partition = format!("{namespace}#{shard}");
                    self.query_partition(table, "pk", partition, Some("sk, exp"), |item| {
                        let live = match item.get("exp") {
                            Some(AttributeValue::N(at)) => at.parse::<i64>()? > now,
                            _ => true,
                        };
                        if let (true, Some(AttributeValue::S(key))) = (live, item.get("sk")) {
                            std::hint::black_box(key.clone());
                            count += 1;
                        }
                        Ok(())
                    })
                    .await?;
                    Ok::<u64, BoxError>(count)
                }
            })
            .buffer_unordered(usize::from(shards))
            .try_fold(0, |total, count| async move { Ok(total + count) })
            .await
    }

    async fn read_partition(&self, table: &str, partition: &str) -> Result<u64, BoxError> {
        let table = format!("{}{table}", self.prefix);
        let mut ascending = Ascending::default();
        self.query_partition(&table, "stream", partition.to_owned(), None, |item| {
            let (event, version) = event_of(item)?;
            std::hint::black_box(version);
            ascending.add(&event)
        })
        .await?;
        Ok(ascending.count)
    }
}

/// An event and its version from an item as storekit's tables write it: the record's fields
/// as native attributes beside `_storekit_version`, read field by field as hand-written code
/// would.
#[cfg(feature = "dynamodb")]
fn event_of(item: &Item) -> Result<(Event, u64), BoxError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(format!("the item's {name} is not a string")),
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(number)) => Ok(number.as_str()),
        _ => Err(format!("the item's {name} is not a number")),
    };
    let event = Event {
        stream: text("stream")?,
        seq: number("seq")?.parse()?,
        kind: text("kind")?,
        amount_cents: number("amount_cents")?.parse()?,
        note: text("note")?,
    };
    Ok((event, number("_storekit_version")?.parse()?))
}
