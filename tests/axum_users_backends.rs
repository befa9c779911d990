//! The `axum_users` example binary, unchanged, on SQLite, PostgreSQL and DynamoDB: only
//! `DATABASE_URL` differs. Each test starts the compiled example on a free loopback port, drives
//! it over a real socket (register, log in for a session cookie, `/me`, a restart the sessions
//! survive, a password change that ends the other sessions, logout, and the error cases a
//! client meets), and kills it.
//!
//! The binary is the one `cargo test` builds next to this test (`target/<profile>/examples/`);
//! a `cargo test --test axum_users_backends` alone does not rebuild examples, so the test refuses
//! a binary older than the example's source. PostgreSQL and DynamoDB need
//! `STOREKIT_POSTGRES_URL` / `STOREKIT_DYNAMODB_ENDPOINT` (`eval "$(scripts/services.sh up)"`):
//! without them the test says SKIPPED, and fails if `CI` is set.

// Without any backend compiled in, the client and server helpers have no test to serve.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "dynamodb")),
    allow(dead_code, unused_imports)
)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use storekit::UserPatch;
use storekit::futures::future::join_all;

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite() {
    let file = TempDb::new();
    let url = format!("sqlite://{}", file.0.display());
    scenario(&url).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_sessions_end_after_their_max_age_without_requests() {
    let file = TempDb::new();
    let url = format!("sqlite://{}", file.0.display());
    let server = Server::start(&url, &[("SESSION_MAX_AGE_SECS", "1")]);
    let api = Api::new(&server);
    let email = "clock@example.com";
    assert_eq!(api.register(email, PASSWORD).await.0, StatusCode::CREATED);
    let session = api.login_session(email, PASSWORD).await;
    assert_eq!(api.me(Some(&session)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.me(Some(&session)).await.0, StatusCode::UNAUTHORIZED);
}

/// One login request, as an operator sees it with `RUST_LOG=storekit=debug`: one span per store
/// call it made, in order, with OpenTelemetry's database fields and never the email, password
/// or session id.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_login_request_shows_one_span_per_store_call() {
    let file = TempDb::new();
    let url = format!("sqlite://{}", file.0.display());
    let server = Server::start(&url, &[("RUST_LOG", "storekit=debug")]);
    let api = Api::new(&server);
    let email = "traced@example.com";
    assert_eq!(api.register(email, PASSWORD).await.0, StatusCode::CREATED);
    let session = api.login_session(email, PASSWORD).await;
    let log = server.stop();
    let spans: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" close "))
        .collect();
    let operations: Vec<&str> = spans
        .iter()
        .filter_map(|line| line.split("db.operation.name=\"").nth(1)?.split('"').next())
        .collect();
    // Register, then log in: the user by email; the login cycles the session's id, and
    // tower-sessions deletes the id it replaces (never stored here) before the new session is
    // stored if its id is free.
    assert_eq!(
        operations,
        [
            "create_user",
            "get_user_by_email",
            "delete",
            "set_if_absent"
        ],
        "register, then login: {log}"
    );
    for (span, collection) in spans.iter().zip(["users", "users", "sessions", "sessions"]) {
        for field in [
            "storekit.backend=\"sqlite\"".to_owned(),
            "db.system.name=\"sqlite\"".to_owned(),
            format!("db.collection.name=\"{collection}\""),
            "storekit.outcome=\"ok\"".to_owned(),
        ] {
            assert!(span.contains(&field), "{field} in {span}");
        }
        for secret in [email, PASSWORD, session.as_str()] {
            assert!(!span.contains(secret), "{secret} in {span}");
        }
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres() {
    let Some(server) = server_env("STOREKIT_POSTGRES_URL") else {
        return;
    };
    // A unique table prefix: runs sharing the database never see each other's users.
    let separator = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{separator}prefix={}", unique_name());
    scenario(&url).await;
    let config = storekit::PostgresConfig::from_url(&url).expect("the test URL parses");
    let store = storekit::PostgresStore::connect(&config)
        .await
        .expect("PostgreSQL is reachable for cleanup");
    store.drop_tables().await.expect("the test's tables drop");
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn dynamodb() {
    let Some(endpoint) = server_env("STOREKIT_DYNAMODB_ENDPOINT") else {
        return;
    };
    // The tables made under this unique prefix stay in DynamoDB Local, which keeps them in
    // memory only until it stops; the facade has no call to drop them.
    let url = format!(
        "dynamodb://?endpoint={endpoint}&region=us-east-1&prefix={}",
        unique_name()
    );
    scenario(&url).await;
}

#[cfg(not(all(feature = "sqlite", feature = "postgres", feature = "dynamodb")))]
#[test]
#[allow(clippy::print_stderr)] // A skip must be loud on the test's own output.
fn backends_left_out_of_this_build() {
    for (feature, on) in [
        ("sqlite", cfg!(feature = "sqlite")),
        ("postgres", cfg!(feature = "postgres")),
        ("dynamodb", cfg!(feature = "dynamodb")),
    ] {
        if !on {
            eprintln!(
                "SKIPPED: axum_users on {feature}: built without storekit's `{feature}` feature \
                 (run with --all-features)"
            );
        }
    }
}

const PASSWORD: &str = "correct horse battery";

/// Everything a client of the example can see, on the backend that `url` names.
async fn scenario(url: &str) {
    let server = Server::start(url, &[]);
    let api = Api::new(&server);

    let (status, ada) = api.register("Ada@Example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    assert_eq!(
        ada["email"], "Ada@Example.com",
        "the email is kept as typed"
    );
    assert_eq!(ada["is_active"], true);
    assert!(
        ada.get("hashed_password").is_none(),
        "the hash leaked: {ada}"
    );
    assert!(!ada["id"].is_null(), "{ada}");

    // Emails are unique ignoring case, Unicode included; the database decides atomically.
    let (status, body) = api.register("ada@EXAMPLE.COM", PASSWORD).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let racers = [
        "Grace@Example.com",
        "grace@example.com",
        "GRACE@EXAMPLE.COM",
    ];
    let answers = join_all(racers.iter().map(|email| api.register(email, PASSWORD))).await;
    let mut statuses: Vec<_> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT
        ],
        "{answers:?}"
    );

    for bad_email in ["not-an-email", "two@@example.com", ""] {
        let (status, body) = api.register(bad_email, PASSWORD).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad_email:?}: {body}"
        );
    }
    let (status, body) = api.register("short@example.com", "short").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    for (email, password) in [
        ("ada@example.com", "wrong horse battery"),
        ("nobody@example.com", PASSWORD),
        ("not-an-email", PASSWORD),
    ] {
        let (status, body) = api.login(email, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}: {body}");
    }

    let session = api.login_session("ADA@example.COM", PASSWORD).await;
    let (status, me) = api.me(Some(&session)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!((&me["id"], &me["email"]), (&ada["id"], &ada["email"]));
    assert_eq!(api.me(None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.me(Some("not-a-session")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let other_session = api.login_session("ada@example.com", PASSWORD).await;
    assert_ne!(session, other_session);

    // A restart: the sessions are in the database, not in the process.
    drop(server);
    let server = Server::start(url, &[]);
    let api = Api::new(&server);
    assert_eq!(api.me(Some(&session)).await.0, StatusCode::OK);
    assert_eq!(api.me(Some(&other_session)).await.0, StatusCode::OK);

    // A password change keeps the session that made it and ends the other.
    let new_password = "battery staple horse";
    let (status, body) = api
        .post(
            "/password",
            &json!({ "password": new_password }),
            Some(&session),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(api.me(Some(&session)).await.0, StatusCode::OK);
    assert_eq!(
        api.me(Some(&other_session)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.login("ada@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let third_session = api.login_session("ada@example.com", new_password).await;

    // Logging out ends that session only.
    assert_eq!(api.logout(Some(&session)).await, StatusCode::NO_CONTENT);
    assert_eq!(api.me(Some(&session)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.logout(Some(&session)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api.logout(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api.me(Some(&third_session)).await.0, StatusCode::OK);

    // Deactivated through the store itself (as an admin tool would, from another process):
    // the live session ends and logging in is refused.
    let stores = storekit::connect(url).await.expect("the test connects too");
    let users = stores.auth();
    let user = users
        .get_user_by_email("ada@example.com")
        .await
        .expect("the store answers")
        .expect("Ada exists");
    users
        .update_user(user.id, UserPatch::new().active(false))
        .await
        .expect("Ada is deactivated");
    assert_eq!(
        api.me(Some(&third_session)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.login("ada@example.com", new_password).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// A client for the example's routes.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.base.clone(),
        }
    }

    /// A request with the session cookie `id=session`, if given.
    fn with_session(
        request: reqwest::RequestBuilder,
        session: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match session {
            Some(session) => request.header("cookie", format!("id={session}")),
            None => request,
        }
    }

    async fn post(&self, path: &str, body: &Value, session: Option<&str>) -> (StatusCode, Value) {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        let response = Self::with_session(request, session).send().await;
        read(response.expect("the server answers")).await
    }

    async fn register(&self, email: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({ "email": email, "password": password });
        self.post("/register", &body, None).await
    }

    async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({ "email": email, "password": password });
        self.post("/login", &body, None).await
    }

    /// Logs in and returns the session id from the `Set-Cookie` header.
    async fn login_session(&self, email: &str, password: &str) -> String {
        let body = json!({ "email": email, "password": password });
        let response = self
            .http
            .post(format!("{}/login", self.base))
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (status, user) = read(response).await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert_eq!(
            user["email"].as_str().map(str::to_lowercase),
            Some(email.to_lowercase())
        );
        let cookie = cookie.expect("login sets the session cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        cookie
            .split(';')
            .next()
            .and_then(|pair| pair.strip_prefix("id="))
            .expect("the cookie is id=…")
            .to_owned()
    }

    async fn me(&self, session: Option<&str>) -> (StatusCode, Value) {
        let request = self.http.get(format!("{}/me", self.base));
        let response = Self::with_session(request, session).send().await;
        read(response.expect("the server answers")).await
    }

    async fn logout(&self, session: Option<&str>) -> StatusCode {
        self.post("/logout", &Value::Null, session).await.0
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("the body arrives");
    // Not every answer is JSON (axum's own rejections are text); keep those as a string.
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The example binary, running; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts the example with `DATABASE_URL=url` on a free port, and waits until it listens.
    fn start(url: &str, env: &[(&str, &str)]) -> Self {
        let binary = example_binary("axum_users");
        let mut child = Command::new(&binary)
            .env("DATABASE_URL", url)
            .env("PORT", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the start-up line, then keeps draining so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, address)) = line.split_once("listening on ") {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        // DynamoDB Local takes a few seconds to create tables and enable their TTL.
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => Self { child, base },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("axum_users did not start ({status}) with DATABASE_URL={url}:\n{stderr}");
            }
        }
    }
}

impl Server {
    /// Stops the server and returns everything it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of an example that `cargo test` built beside this test's own executable
/// (`target/<profile>/deps/THIS` → `target/<profile>/examples/NAME`).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (modified(&binary), modified(&source)) {
        (Some(built), Some(written)) if built >= written => binary,
        (None, _) => panic!(
            "{} is missing: run the tests with plain `cargo test` (which builds examples), or \
             `cargo build --example {name}` with the same features first",
            binary.display()
        ),
        _ => panic!(
            "{} is older than examples/{name}.rs: plain `cargo test` rebuilds it",
            binary.display()
        ),
    }
}

/// A table prefix (a valid identifier everywhere) that no other run uses.
fn unique_name() -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("axum_users_{seconds:x}_{}_{count}_", std::process::id())
}

/// The server address in environment variable `var`; without it a loud skip, or a failure
/// under CI, which must never pass by skipping.
#[allow(clippy::print_stderr)] // A skip must be loud on the test's own output.
#[cfg_attr(
    not(any(feature = "postgres", feature = "dynamodb")),
    allow(dead_code, reason = "only the server backends read their address")
)]
fn server_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set and CI is: run `eval \"$(scripts/services.sh up)\"` first")
        }
        _ => {
            eprintln!(
                "SKIPPED: axum_users on {var}: not set; run `eval \"$(scripts/services.sh up)\"`"
            );
            None
        }
    }
}

/// An SQLite file in the temp directory, removed (with its WAL files) when dropped.
#[cfg(feature = "sqlite")]
struct TempDb(PathBuf);

#[cfg(feature = "sqlite")]
impl TempDb {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("{}.db", unique_name())))
    }
}

#[cfg(feature = "sqlite")]
impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}
