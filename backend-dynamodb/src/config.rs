//! [`DynamoDbConfig`]: the table prefix, connection overrides, timeouts, id kind and KV shard
//! count of a store, validated once when it is built so that a store never holds a bad table
//! name.

use std::fmt;
use std::time::Duration;

use storekit_core::{Error, IdKind, Result, validate};

/// The smallest and largest number of partitions a key-value namespace is spread over.
const SHARDS: std::ops::RangeInclusive<u16> = 1..=256;

/// How a [`crate::DynamoDbStore`] names its tables and connects.
///
/// Built with [`DynamoDbConfig::builder`] (or [`DynamoDbConfig::from_url`]); every field is
/// checked by [`DynamoDbConfigBuilder::build`], so a config that exists is valid. Its `Debug`
/// leaves the secret access key out.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamoDbConfig {
    table_prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<StaticCredentials>,
    attempt_timeout: Duration,
    operation_timeout: Duration,
    id_kind: IdKind,
    shard_count: u16,
    keep_expired: Duration,
}

#[derive(Clone, PartialEq, Eq)]
struct StaticCredentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        Self {
            table_prefix: DynamoDbConfig::DEFAULT_PREFIX.to_owned(),
            endpoint: None,
            region: None,
            credentials: None,
            attempt_timeout: DynamoDbConfig::DEFAULT_ATTEMPT_TIMEOUT,
            operation_timeout: DynamoDbConfig::DEFAULT_OPERATION_TIMEOUT,
            id_kind: IdKind::Uuid,
            shard_count: DynamoDbConfig::DEFAULT_SHARDS,
            keep_expired: Duration::ZERO,
        }
    }
}

impl fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbConfig")
            .field("table_prefix", &self.table_prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.credentials.as_ref().map(|c| &c.access_key_id),
            )
            .field("attempt_timeout", &self.attempt_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("id_kind", &self.id_kind)
            .field("shard_count", &self.shard_count)
            .field("keep_expired", &self.keep_expired)
            .finish_non_exhaustive()
    }
}

impl DynamoDbConfig {
    /// The table prefix used unless another is set.
    pub const DEFAULT_PREFIX: &'static str = "storekit_";

    /// The number of partitions per key-value namespace unless another is set.
    pub const DEFAULT_SHARDS: u16 = 16;

    /// How long one attempt of a request may take unless set otherwise: 3 s.
    ///
    /// DynamoDB answers in milliseconds (a transaction in tens of them), so an attempt still
    /// unanswered after 3 s is stuck (a stalled connection, an endpoint that accepted it and
    /// went silent), and sending it again on a fresh connection is the better bet. It is long
    /// enough that a slow but working network is never cut off.
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

    /// How long a request may take with all its retries unless set otherwise: 10 s.
    ///
    /// Room for the SDK's three attempts at their timeout, with its backoff: a caller learns of
    /// a stalled or unreachable server within 10 s, as [`Error::OutcomeUnknown`] (no answer)
    /// or [`Error::Unavailable`] (no connection), instead of a hang.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

    /// A builder starting from the defaults: prefix `storekit_`, UUID ids, 16 shards, attempt
    /// and operation timeouts of 3 s and 10 s, and the endpoint, region and credentials of the
    /// standard AWS chain.
    #[must_use]
    pub fn builder() -> DynamoDbConfigBuilder {
        DynamoDbConfigBuilder {
            config: Self::default(),
        }
    }

    /// Settings from the URL in `DATABASE_URL` (see [`DynamoDbConfig::from_url`]).
    pub fn from_env() -> Result<Self> {
        Self::from_url(&storekit_core::database_url_from_env()?)
    }

    /// Parses a `dynamodb://` URL, as `storekit::connect` receives it:
    /// `dynamodb://?endpoint=http://127.0.0.1:8000&region=us-east-1&prefix=myapp_&id=int&shards=16`,
    /// with the timeouts in milliseconds: `&attempt_timeout_ms=5000&operation_timeout_ms=15000`.
    ///
    /// Every query parameter is optional; an unknown or repeated one is an error rather than
    /// silently ignored, so a typo cannot point an application at the wrong tables. Credentials
    /// are never taken from a URL; they come from the standard AWS chain.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed =
            url::Url::parse(url).map_err(|e| Error::invalid("url", format!("{url:?}: {e}")))?;
        if parsed.scheme() != "dynamodb" {
            return Err(Error::invalid(
                "url",
                format!(
                    "expected the dynamodb:// scheme, got {}://",
                    parsed.scheme()
                ),
            ));
        }
        if parsed.host_str().is_some_and(|h| !h.is_empty()) || !matches!(parsed.path(), "" | "/") {
            return Err(Error::invalid(
                "url",
                "a dynamodb:// URL takes only query parameters, e.g. dynamodb://?region=us-east-1",
            ));
        }
        let mut builder = Self::builder();
        let mut seen = Vec::new();
        for (name, value) in parsed.query_pairs() {
            if seen.contains(&name) {
                return Err(Error::invalid("url", format!("{name} is given twice")));
            }
            builder =
                match &*name {
                    "endpoint" => builder.endpoint(value.as_ref()),
                    "region" => builder.region(value.as_ref()),
                    "prefix" => builder.table_prefix(value.as_ref()),
                    "id" => builder.id_kind(IdKind::parse(&value)?),
                    "shards" => builder.shard_count(value.parse().map_err(|_| {
                        Error::invalid("shards", format!("{value:?} is not a number"))
                    })?),
                    "attempt_timeout_ms" => builder.attempt_timeout(millis(&name, &value)?),
                    "operation_timeout_ms" => builder.operation_timeout(millis(&name, &value)?),
                    "keep_expired" => builder
                        .keep_expired(storekit_core::time::parse_seconds("keep_expired", &value)?),
                    other => {
                        return Err(Error::invalid(
                            "url",
                            format!(
                                "unknown parameter {other:?} (known: endpoint, region, prefix, id, \
                             shards, attempt_timeout_ms, operation_timeout_ms, keep_expired)"
                            ),
                        ));
                    }
                };
            seen.push(name);
        }
        builder.build()
    }

    /// The prefix of every table name.
    #[must_use]
    pub fn table_prefix(&self) -> &str {
        &self.table_prefix
    }

    /// The endpoint override (e.g. DynamoDB Local), if any.
    #[must_use]
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The region override, if any.
    #[must_use]
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// How long one attempt of a request may take before it is abandoned (and retried, if the
    /// operation's time allows). Used by [`crate::DynamoDbStore::connect`].
    #[must_use]
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// How long a request may take with all its retries before it fails with
    /// [`Error::OutcomeUnknown`]. Used by [`crate::DynamoDbStore::connect`].
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// The kind of user id the store assigns.
    #[must_use]
    pub fn id_kind(&self) -> IdKind {
        self.id_kind
    }

    /// How many partitions each key-value namespace is spread over.
    #[must_use]
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// How long expired key-value items are kept after their deadline (default 0): the
    /// native TTL attribute of an item is its deadline plus this, so DynamoDB deletes it no
    /// sooner, and `KvStore::get_stale` may read it until then.
    #[must_use]
    pub fn keep_expired(&self) -> Duration {
        self.keep_expired
    }

    /// The static credentials, if set: (access key id, secret access key).
    pub(crate) fn static_credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|c| (c.access_key_id.as_str(), c.secret_access_key.as_str()))
    }

    /// The name of the users table.
    pub(crate) fn users_table(&self) -> String {
        format!("{}users", self.table_prefix)
    }

    /// The name of the key-value table.
    pub(crate) fn kv_table(&self) -> String {
        format!("{}kv", self.table_prefix)
    }

    /// The name of the tables store's shared table of unique-value markers and table catalogs.
    pub(crate) fn unique_table(&self) -> String {
        format!("{}{}", self.table_prefix, crate::tables::UNIQUE_TABLE)
    }
}

/// Builds a [`DynamoDbConfig`]; [`DynamoDbConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
pub struct DynamoDbConfigBuilder {
    config: DynamoDbConfig,
}

impl DynamoDbConfigBuilder {
    /// The prefix of every table name (letters, digits and `_`, at most 48 bytes), so several
    /// applications or test runs can share one account.
    #[must_use]
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.table_prefix = prefix.into();
        self
    }

    /// Sends requests to this endpoint instead of AWS's, e.g. `http://127.0.0.1:8000` for
    /// DynamoDB Local. Used by [`crate::DynamoDbStore::connect`].
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.endpoint = Some(endpoint.into());
        self
    }

    /// The AWS region, overriding the standard chain. Used by
    /// [`crate::DynamoDbStore::connect`].
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = Some(region.into());
        self
    }

    /// Fixed credentials instead of the standard AWS chain, e.g. dummy ones for DynamoDB Local.
    /// Used by [`crate::DynamoDbStore::connect`].
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.config.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        });
        self
    }

    /// How long one attempt of a request may take before it is abandoned and, if the operation
    /// timeout allows, sent again (default [`DynamoDbConfig::DEFAULT_ATTEMPT_TIMEOUT`]). Used
    /// by [`crate::DynamoDbStore::connect`]; a client passed to [`crate::DynamoDbStore::from_client`]
    /// keeps its own timeouts.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = timeout;
        self
    }

    /// How long a request may take with all its attempts before it fails with
    /// [`Error::OutcomeUnknown`] (default [`DynamoDbConfig::DEFAULT_OPERATION_TIMEOUT`]). Used by
    /// [`crate::DynamoDbStore::connect`]; a client passed to [`crate::DynamoDbStore::from_client`]
    /// keeps its own timeouts.
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.config.operation_timeout = timeout;
        self
    }

    /// The kind of user id the store assigns (default UUID v7).
    #[must_use]
    pub fn id_kind(mut self, kind: IdKind) -> Self {
        self.config.id_kind = kind;
        self
    }

    /// How many partitions each key-value namespace is spread over (1 to 256, default 16).
    ///
    /// It is part of the table's layout: every store using a table must use the same count,
    /// and it cannot change once items are written.
    #[must_use]
    pub fn shard_count(mut self, shards: u16) -> Self {
        self.config.shard_count = shards;
        self
    }

    /// Sets how long expired key-value items are kept after their deadline (URL:
    /// `keep_expired=SECONDS`); see [`DynamoDbConfig::keep_expired`].
    #[must_use]
    pub fn keep_expired(mut self, keep: Duration) -> Self {
        self.config.keep_expired = keep;
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<DynamoDbConfig> {
        let config = self.config;
        // Table names are not parameters: the prefix is restricted to a safe alphabet here,
        // once, so no request can ever name a table the application did not mean.
        validate::check_identifier("table prefix", &config.table_prefix)?;
        if !SHARDS.contains(&config.shard_count) {
            return Err(Error::invalid(
                "shards",
                format!(
                    "{} is not in {}..={}",
                    config.shard_count,
                    SHARDS.start(),
                    SHARDS.end()
                ),
            ));
        }
        if let Some(endpoint) = &config.endpoint {
            url::Url::parse(endpoint)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    Error::invalid("endpoint", format!("{endpoint:?} is not an http(s) URL"))
                })?;
        }
        if config.region.as_deref().is_some_and(str::is_empty) {
            return Err(Error::invalid("region", "must not be empty"));
        }
        if config.attempt_timeout.is_zero() {
            return Err(Error::invalid("attempt_timeout", "must not be zero"));
        }
        // An attempt longer than the operation could never be retried, so the setting would
        // silently mean less than it says.
        if config.operation_timeout < config.attempt_timeout {
            return Err(Error::invalid(
                "operation_timeout",
                format!(
                    "{:?} is shorter than the attempt timeout ({:?})",
                    config.operation_timeout, config.attempt_timeout
                ),
            ));
        }
        Ok(config)
    }
}

/// A timeout given in a URL, in milliseconds.
fn millis(name: &str, value: &str) -> Result<Duration> {
    value
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| Error::invalid("url", format!("{name}={value:?} is not a number of ms")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_strictly() -> Result<()> {
        let config = DynamoDbConfig::from_url(
            "dynamodb://?endpoint=http://127.0.0.1:8000&region=us-east-1&prefix=myapp_&id=int&shards=4\
             &attempt_timeout_ms=250&operation_timeout_ms=1000",
        )?;
        assert_eq!(config.attempt_timeout(), Duration::from_millis(250));
        assert_eq!(config.operation_timeout(), Duration::from_secs(1));
        assert_eq!(config.endpoint(), Some("http://127.0.0.1:8000"));
        assert_eq!(config.region(), Some("us-east-1"));
        assert_eq!(config.table_prefix(), "myapp_");
        assert_eq!(config.id_kind(), IdKind::Int);
        assert_eq!(config.shard_count(), 4);
        assert_eq!(config.users_table(), "myapp_users");

        let defaults = DynamoDbConfig::from_url("dynamodb://")?;
        assert_eq!(defaults, DynamoDbConfig::default());

        for bad in [
            "postgres://?region=x",
            "dynamodb://host?region=x",
            "dynamodb://?prefix=bad-prefix",
            "dynamodb://?prefix=",
            "dynamodb://?id=text",
            "dynamodb://?shards=0",
            "dynamodb://?shards=many",
            "dynamodb://?regoin=us-east-1",
            "dynamodb://?region=a&region=b",
            "dynamodb://?endpoint=localhost:8000",
            "dynamodb://?attempt_timeout_ms=0",
            "dynamodb://?attempt_timeout_ms=5s",
            "dynamodb://?attempt_timeout_ms=2000&operation_timeout_ms=1000",
            "not a url",
        ] {
            let err = DynamoDbConfig::from_url(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err:?}");
        }
        Ok(())
    }

    #[test]
    fn debug_hides_the_secret() -> Result<()> {
        let config = DynamoDbConfig::builder()
            .credentials("AKIDEXAMPLE", "very-secret")
            .build()?;
        let shown = format!("{config:?}");
        assert!(shown.contains("AKIDEXAMPLE") && !shown.contains("very-secret"));
        Ok(())
    }
}
