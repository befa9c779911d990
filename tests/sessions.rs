//! `storekit::sessions::KvSessionStore` under `tower-sessions`' own layer, in an axum app on a
//! loopback socket, on every backend: what the host crate's route tests expect of a store
//! (written again here), a session's expiry as its item's TTL, `create` never overwriting, and
//! 32 concurrent requests on one session.

#![allow(clippy::print_stderr)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use futures::TryStreamExt as _;
use storekit::sessions::KvSessionStore;
use storekit::{KvStore, MemoryStore, Stores, Ttl};
use tower_sessions::cookie::time::{Duration as CookieDuration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{ExpiredDeletion as _, SessionStore as _};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

async fn insert(session: Session) -> &'static str {
    session.insert("foo", 42).await.expect("insert");
    "ok"
}

async fn read(session: Session) -> String {
    match session.get::<i64>("foo").await.expect("get") {
        Some(value) => value.to_string(),
        None => "none".to_owned(),
    }
}

async fn modify(session: Session) -> &'static str {
    session.insert("foo", 43).await.expect("insert");
    "ok"
}

async fn cycle(session: Session) -> &'static str {
    session.cycle_id().await.expect("cycle");
    "ok"
}

async fn remove(session: Session) -> &'static str {
    session.remove::<i64>("foo").await.expect("remove");
    "ok"
}

async fn flush(session: Session) -> &'static str {
    session.flush().await.expect("flush");
    "ok"
}

async fn id(session: Session) -> String {
    session.id().map(|id| id.to_string()).unwrap_or_default()
}

/// Reads `foo` and writes a key of its own: one of many concurrent requests.
async fn touch(session: Session, Path(i): Path<u32>) -> String {
    let seen = read(session.clone()).await;
    session.insert(&format!("k{i}"), i).await.expect("insert");
    seen
}

/// Serves the routes on a loopback port with sessions in `store`; returns the base URL.
async fn serve(store: KvSessionStore, inactivity: CookieDuration) -> String {
    let layer = SessionManagerLayer::new(store).with_expiry(Expiry::OnInactivity(inactivity));
    let app = Router::new()
        .route("/insert", get(insert))
        .route("/get", get(read))
        .route("/modify", get(modify))
        .route("/cycle", get(cycle))
        .route("/remove", get(remove))
        .route("/flush", get(flush))
        .route("/id", get(id))
        .route("/touch/{i}", get(touch))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// One request, with the session cookie if given: the body and the `Set-Cookie` header.
async fn call(base: &str, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("id={cookie}"));
    }
    let response = request.send().await.expect("request");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|value| value.to_str().expect("ascii").to_owned());
    (response.text().await.expect("body"), set_cookie)
}

/// The value of an `id=...` cookie.
fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap_or_default();
    pair.strip_prefix("id=")
        .unwrap_or_else(|| panic!("not the session cookie: {set_cookie}"))
        .to_owned()
}

async fn session_keys(kv: &dyn KvStore, namespace: &str) -> Vec<String> {
    kv.keys(namespace, "").try_collect().await.expect("keys")
}

/// The host crate's route expectations, then expiry, collisions and concurrency.
async fn exercise(stores: &Stores) {
    let kv = stores.kv();
    let store = KvSessionStore::new(kv.clone());
    let base = serve(store.clone(), CookieDuration::hours(1)).await;

    // Nothing read or written: no session, no cookie.
    let (body, set_cookie) = call(&base, "/get", None).await;
    assert_eq!((body.as_str(), set_cookie), ("none", None));

    // Created: the cookie carries the id, with the layer's attributes.
    let (_, set_cookie) = call(&base, "/insert", None).await;
    let set_cookie = set_cookie.expect("a new session sets its cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} in {set_cookie}"
        );
    }
    let first = cookie_value(&set_cookie);
    assert_eq!(first.len(), 22, "{first}");
    let stored = kv
        .get_with_ttl("sessions", &first)
        .await
        .expect("read")
        .expect("the session is stored under its id");
    match stored.ttl {
        Ttl::Remaining(left) => assert!(left > Duration::from_secs(3500), "{left:?}"),
        other => panic!("the session's expiry is its TTL: {other:?}"),
    }

    // Read back, modified.
    assert_eq!(call(&base, "/get", Some(&first)).await.0, "42");
    assert_eq!(call(&base, "/modify", Some(&first)).await.0, "ok");
    assert_eq!(call(&base, "/get", Some(&first)).await.0, "43");

    // Cycled: a new id with the same data; the old id is gone.
    let (_, set_cookie) = call(&base, "/cycle", Some(&first)).await;
    let second = cookie_value(&set_cookie.expect("a cycled session sets its cookie"));
    assert_ne!(first, second);
    assert_eq!(kv.get("sessions", &first).await.expect("get"), None);
    assert_eq!(call(&base, "/get", Some(&second)).await.0, "43");
    assert_eq!(call(&base, "/get", Some(&first)).await.0, "none");

    // 32 concurrent requests on one session: every one sees it, and it stays one session.
    let requests = (0..32).map(|i| {
        let (base, second) = (base.clone(), second.clone());
        tokio::spawn(async move { call(&base, &format!("/touch/{i}"), Some(&second)).await.0 })
    });
    for seen in futures::future::join_all(requests).await {
        assert_eq!(seen.expect("request task"), "43");
    }
    assert_eq!(call(&base, "/id", Some(&second)).await.0, second);
    assert_eq!(call(&base, "/get", Some(&second)).await.0, "43");
    assert_eq!(session_keys(&*kv, "sessions").await, vec![second.clone()]);

    // A value removed, then the session deleted: its cookie is removed and its item gone.
    call(&base, "/remove", Some(&second)).await;
    assert_eq!(call(&base, "/get", Some(&second)).await.0, "none");
    let (_, set_cookie) = call(&base, "/flush", Some(&second)).await;
    let removal = set_cookie.expect("a deleted session removes its cookie");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(session_keys(&*kv, "sessions").await.is_empty());
    assert_eq!(call(&base, "/get", Some(&second)).await.0, "none");

    // Expired: never loaded again, even before anything deletes it.
    let short = KvSessionStore::with_namespace(kv.clone(), "short").expect("namespace");
    let short_base = serve(short.clone(), CookieDuration::seconds(1)).await;
    let (_, set_cookie) = call(&short_base, "/insert", None).await;
    let expiring = cookie_value(&set_cookie.expect("cookie"));
    assert_eq!(call(&short_base, "/get", Some(&expiring)).await.0, "42");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(call(&short_base, "/get", Some(&expiring)).await.0, "none");
    assert_eq!(kv.get("short", &expiring).await.expect("get"), None);
    short.delete_expired().await.expect("delete_expired");

    // `create` never overwrites: a colliding id is replaced by a fresh one.
    let mut taken = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: OffsetDateTime::now_utc() + CookieDuration::minutes(5),
    };
    taken.data.insert("owner".into(), "first".into());
    store.create(&mut taken).await.expect("create");
    let mut colliding = taken.clone();
    colliding.data.insert("owner".into(), "second".into());
    store.create(&mut colliding).await.expect("create again");
    assert_ne!(colliding.id, taken.id, "a colliding id is replaced");
    assert_eq!(
        store.load(&taken.id).await.expect("load"),
        Some(taken.clone())
    );
    assert_eq!(
        store.load(&colliding.id).await.expect("load"),
        Some(colliding.clone())
    );
    // Saved with a date already past, a session is deleted rather than kept.
    let mut past = taken.clone();
    past.expiry_date = OffsetDateTime::now_utc() - CookieDuration::seconds(1);
    store.save(&past).await.expect("save expired");
    assert_eq!(store.load(&taken.id).await.expect("load"), None);
    store.delete(&colliding.id).await.expect("delete");
    assert_eq!(store.load(&colliding.id).await.expect("load"), None);
    assert!(
        !kv.contains("sessions", &colliding.id.to_string())
            .await
            .expect("contains")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_on_memory() {
    exercise(&Stores::from(MemoryStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_on_sqlite() {
    let stores = common::open(&common::sqlite_url("sessions")).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_on_postgres() {
    let Some(url) = common::postgres_url("sessions") else {
        return;
    };
    let stores = common::open(&url).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_on_dynamodb() {
    let Some(url) = common::dynamodb_url("sessions") else {
        return;
    };
    let stores = common::open(&url).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}
