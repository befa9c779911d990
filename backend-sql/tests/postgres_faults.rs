//! PostgreSQL when the server is not there, does not answer, or holds a lock: each is a typed
//! `Unavailable` within the configured time, and nothing is half-written.
#![cfg(feature = "postgres")]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use storekit_core::{Error, KvStore, Result};
use storekit_sql::{PostgresConfig, PostgresStore};

/// A server that accepts connections and never says a word, as a stalled or half-dead one
/// does. Connections are held open until the test process ends.
fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    format!("postgres://postgres@127.0.0.1:{port}/test")
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_at_the_connect_timeout() -> Result<()> {
    let config =
        PostgresConfig::from_url(&silent_server())?.connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = PostgresStore::connect(&config)
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_closed_port_is_unavailable_within_the_connect_timeout() -> Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let config = PostgresConfig::from_url(&url)?.connect_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = PostgresStore::connect(&config)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

/// Another session holds a lock on the row a write needs: the write is cancelled by the
/// server at `statement_timeout`, reported as `Unavailable` (safe to retry), and once the lock
/// is gone the value is the one the other session left.
#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_unavailable_not_an_unknown_outcome() -> Result<()> {
    // `.invalid` never resolves (RFC 2606), so nothing can have been sent.
    let url = "postgres://postgres@storekit-test.invalid:5432/test";
    let config = PostgresConfig::from_url(url)?.connect_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = PostgresStore::connect(&config)
        .await
        .expect_err("the name does not resolve");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        err.is_retryable() && !err.may_have_been_applied(),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test]
async fn a_write_blocked_by_a_lock_is_unavailable_at_the_statement_timeout() -> Result<()> {
    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let schema = format!("faults_{}", std::process::id());
    let config = PostgresConfig::from_url(&url)?
        .schema(&schema)
        .statement_timeout(Some(Duration::from_millis(300)));
    let store = PostgresStore::connect(&config).await?;
    store.migrate().await?;
    store.set("locks", "row", b"before", None).await?;

    let outcome = async {
        let mut holder = store.pool().begin().await.map_err(backend)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM \"{schema}\".kv WHERE namespace = 'locks' FOR UPDATE"
        )))
        .execute(&mut *holder)
        .await
        .map_err(backend)?;
        let started = Instant::now();
        let err = store
            .set("locks", "row", b"blocked", None)
            .await
            .expect_err("the row is locked");
        let took = started.elapsed();
        holder.rollback().await.map_err(backend)?;
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(5),
            "gave up after {took:?}"
        );
        assert_eq!(
            store.get("locks", "row").await?.as_deref(),
            Some(&b"before"[..])
        );
        Ok(())
    }
    .await;

    store.drop_tables().await?;
    common::drop_schema(store.pool(), &schema).await?;
    outcome
}

/// The server terminates every connection of the store (`pg_terminate_backend`, as a failover
/// or an administrator does): calls on a dead connection fail with a retryable error, never
/// `Backend`, and the same store serves again without being rebuilt.
#[tokio::test]
async fn connections_killed_by_the_server_are_retryable_and_the_store_recovers() -> Result<()> {
    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let app = format!("storekit_kill_{}", std::process::id());
    let schema = format!("kill_{}", std::process::id());
    let config = PostgresConfig::from_url(&with_application_name(&url, &app))?
        .schema(&schema)
        .max_connections(4);
    let store = PostgresStore::connect(&config).await?;
    store.migrate().await?;
    // Every connection of the pool in use, so that all of them are killed.
    let keys: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    let writes = keys.iter().map(|key| store.set("kill", key, b"v", None));
    futures::future::try_join_all(writes).await?;

    let admin = PostgresStore::connect(&PostgresConfig::from_url(&url)?).await?;
    let killed = kill_connections(&admin, &app).await?;
    assert!(killed >= 1, "no connection of the store was found");

    let mut failures = 0;
    for i in 0..8 {
        match store.set("kill", &format!("after{i}"), b"w", None).await {
            Ok(()) => {}
            Err(err) if err.is_retryable() => failures += 1,
            Err(err) => panic!("a killed connection must be retryable, got {err:?}"),
        }
    }
    // At most one failure per killed connection, then fresh connections.
    assert!(
        failures <= killed,
        "{failures} failures for {killed} killed"
    );
    for i in 0..8 {
        assert_eq!(
            store.get("kill", &format!("k{i}")).await?.as_deref(),
            Some(&b"v"[..])
        );
    }
    store.set("kill", "last", b"x", None).await?;
    assert_eq!(store.get("kill", "last").await?.as_deref(), Some(&b"x"[..]));

    store.drop_tables().await?;
    common::drop_schema(admin.pool(), &schema).await?;
    Ok(())
}

/// Connections killed again and again in the middle of a load of user creates and kv writes:
/// every failure is retryable, and afterwards no user is half there: each one found by id is
/// found by its email and the other way round, and a create that failed with an unknown outcome
/// left either a whole user or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_mid_load_leave_no_half_written_user() -> Result<()> {
    use storekit_core::{NewUser, UserStore as _};

    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let app = format!("storekit_midload_{}", std::process::id());
    let schema = format!("midload_{}", std::process::id());
    let config = PostgresConfig::from_url(&with_application_name(&url, &app))?
        .schema(&schema)
        .max_connections(8);
    let store = PostgresStore::connect(&config).await?;
    store.migrate().await?;
    let admin = PostgresStore::connect(&PostgresConfig::from_url(&url)?).await?;

    let writers: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..40 {
                    let email = format!("load-{task}-{i}@example.com");
                    let created = store.create_user(NewUser::new(email.clone(), "h")).await;
                    let kv = store.set("load", &format!("{task}-{i}"), b"v", None).await;
                    for err in [created.as_ref().err(), kv.as_ref().err()]
                        .into_iter()
                        .flatten()
                    {
                        assert!(err.is_retryable(), "not retryable: {err:?}");
                    }
                    outcomes.push((email, created.map(|user| user.id)));
                }
                outcomes
            })
        })
        .collect();
    let mut kills = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        kills += kill_connections(&admin, &app).await?;
    }
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.expect("a writer panicked"));
    }
    assert!(kills > 0, "no connection was killed");

    let mut failed = 0;
    for (email, created) in &outcomes {
        let by_email = store.get_user_by_email(email).await?;
        match created {
            Ok(id) => {
                assert_eq!(by_email.as_ref().map(|u| u.id), Some(*id), "{email}");
                assert_eq!(
                    store.get_user(*id).await?.map(|u| u.email),
                    Some(email.clone())
                );
            }
            // Not known whether it landed: if it did, it is whole.
            Err(_) => {
                failed += 1;
                if let Some(user) = by_email {
                    assert_eq!(
                        store.get_user(user.id).await?.map(|u| u.email),
                        Some(email.clone())
                    );
                }
            }
        }
    }
    // The store recovered after each kill: most calls went through.
    assert!(
        failed * 4 < outcomes.len(),
        "{failed} of {} creates failed after {kills} kills",
        outcomes.len()
    );

    store.drop_tables().await?;
    common::drop_schema(admin.pool(), &schema).await?;
    Ok(())
}

/// A TCP proxy to the server that can stall: while stalled it keeps every connection open
/// and passes no byte either way, as a hung server or a network that drops packets does.
struct StallingProxy {
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: String) -> (Self, u16) {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (from_client, to_client) = inbound.into_split();
                let (from_server, to_server) = outbound.into_split();
                for (mut from, mut to) in [(from_client, to_server), (from_server, to_client)] {
                    let flag = flag.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let read = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(read) => read,
                            };
                            while flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            if to.write_all(&buf[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        (Self { stalled }, port)
    }

    fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The server stops answering in the middle of a session: a call fails with `OutcomeUnknown`
/// at the operation timeout instead of waiting for ever, and once the server answers again
/// the same store serves, on the connections it already had.
#[tokio::test]
async fn a_server_that_stalls_mid_session_is_reported_at_the_operation_timeout() -> Result<()> {
    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let parsed = url::Url::parse(&url).map_err(|e| Error::invalid("url", e.to_string()))?;
    let upstream = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432)
    );
    let (proxy, port) = StallingProxy::start(upstream).await;
    let mut proxied = parsed.clone();
    proxied
        .set_port(Some(port))
        .map_err(|()| Error::invalid("url", "no port"))?;
    let schema = format!("stall_{}", std::process::id());
    let config = PostgresConfig::from_url(proxied.as_str())?
        .schema(&schema)
        .max_connections(2)
        .operation_timeout(Some(Duration::from_millis(700)));
    let store = PostgresStore::connect(&config).await?;
    store.migrate().await?;
    store.set("stall", "k", b"before", None).await?;

    proxy.stall(true);
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), store.get("stall", "k"))
        .await
        .expect("the call came back")
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    // The message names the call and what it was about; the driver's error stays its source.
    assert_eq!(
        err.to_string(),
        "postgres did not answer: the outcome is unknown in get (namespace \"stall\", key \"k\")"
    );
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "gave up after {took:?}"
    );
    proxy.stall(false);

    // The server answers again: the store serves, whatever state the cut call left behind.
    let mut served = false;
    for _ in 0..5 {
        match store.get("stall", "k").await {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some(&b"before"[..]));
                served = true;
                break;
            }
            Err(err) => assert!(err.is_retryable(), "{err:?}"),
        }
    }
    assert!(served, "the store did not recover");
    store.set("stall", "k", b"after", None).await?;
    assert_eq!(
        store.get("stall", "k").await?.as_deref(),
        Some(&b"after"[..])
    );

    store.drop_tables().await?;
    let admin = PostgresStore::connect(&PostgresConfig::from_url(&url)?).await?;
    common::drop_schema(admin.pool(), &schema).await?;
    Ok(())
}

/// `url` with an `application_name`, by which the server's sessions of one store are found.
fn with_application_name(url: &str, app: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={app}")
}

/// Terminates every server session named `app` (`pg_terminate_backend`), through `admin`'s
/// pool; returns how many there were.
async fn kill_connections(admin: &PostgresStore, app: &str) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS t",
    )
    .bind(app)
    .fetch_one(admin.pool())
    .await
    .map_err(backend)
}

fn backend(err: sqlx::Error) -> Error {
    Error::backend("postgres", err)
}
