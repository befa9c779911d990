//! An HTTP API for accounts on storekit, with `axum-login` and `tower-sessions`: register,
//! log in (a session cookie; the session is kept in storekit's key-value store, so it survives a
//! restart and is shared by every instance), read your own account, change your password (which
//! ends your other sessions), log out.
//!
//! ```sh
//! cargo run --example axum_users --features axum-login   # ./storekit-users.db, http://127.0.0.1:3000
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --features axum-login,postgres --example axum_users
//!
//! curl -i localhost:3000/register -H 'content-type: application/json' \
//!      -d '{"email": "ada@example.com", "password": "correct horse"}'
//! curl -c jar -i localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"email": "ADA@example.com", "password": "correct horse"}'    # Set-Cookie: id=…
//! curl -b jar localhost:3000/me
//! curl -b jar -i localhost:3000/password -H 'content-type: application/json' \
//!      -d '{"password": "battery staple"}'
//! curl -b jar -i -X POST localhost:3000/logout
//! ```
//!
//! | route | answer |
//! |---|---|
//! | `POST /register` `{email, password}` | `201` and the user (never the hash); `409` if the email is taken in any letter case; `422` for a malformed email or a short password |
//! | `POST /login` `{email, password}` | the user and a session cookie `id`; `401` for a wrong password, an unknown email or an inactive user |
//! | `GET /me` with the cookie | the user; `401` without a live session |
//! | `POST /password` `{password}` with the cookie | `204`; every other session of the user ends, this one stays |
//! | `POST /logout` with the cookie | `204`, and the session is deleted |
//!
//! Environment: `DATABASE_URL` (any storekit URL; default an SQLite file), `PORT` (default 3000,
//! on 127.0.0.1; `0` picks a free port), `SESSION_MAX_AGE_SECS` (a session ends after this long
//! without a request; default one day). The server migrates the database at start, so the same
//! binary runs on SQLite, PostgreSQL and DynamoDB by changing only `DATABASE_URL`. With
//! `RUST_LOG=storekit=debug`, every storekit call a request makes prints its span to stderr.

use std::net::Ipv4Addr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_login::AuthManagerLayerBuilder;
use serde::{Deserialize, Serialize};
use storekit::chrono::{DateTime, Utc};
use storekit::login::{AuthBackend, Credentials, LoginUser};
use storekit::sessions::KvSessionStore;
use storekit::{Error, NewUser, Stores, User, UserId, UserPatch};
use tower_sessions::cookie::time::Duration as CookieDuration;
use tower_sessions::{Expiry, SessionManagerLayer};

/// How long a session lasts without a request unless `SESSION_MAX_AGE_SECS` says otherwise.
const SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
const MIN_PASSWORD_CHARS: usize = 8;
/// Bounds the hashing work one anonymous request can ask for.
const MAX_PASSWORD_BYTES: usize = 1024;

type AuthSession = axum_login::AuthSession<AuthBackend>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    log_spans_if_asked();
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://storekit-users.db".to_owned());
    let port: u16 = env_number("PORT")?.unwrap_or(3000);
    let session_max_age =
        env_number("SESSION_MAX_AGE_SECS")?.map_or(SESSION_MAX_AGE, Duration::from_secs);

    let stores = storekit::connect(&url).await?;
    stores.migrate().await?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    // The URL is not logged: it may hold a password.
    say(format!(
        "users API on {} listening on http://{}",
        stores.backend(),
        listener.local_addr()?
    ));
    axum::serve(listener, app(&stores, session_max_age)?)
        .with_graceful_shutdown(async {
            // Without a signal handler there is nothing to wait for; stop serving only on Ctrl-C.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await?;
    Ok(())
}

/// The whole API over any backend's stores; tests and other binaries can mount it as they like.
fn app(stores: &Stores, session_max_age: Duration) -> Result<Router, String> {
    let max_age = CookieDuration::try_from(session_max_age).map_err(|e| e.to_string())?;
    let sessions = SessionManagerLayer::new(KvSessionStore::new(stores.kv()))
        .with_expiry(Expiry::OnInactivity(max_age))
        // Served on plain HTTP on loopback; behind TLS keep the default, `Secure`.
        .with_secure(false);
    let auth = AuthManagerLayerBuilder::new(AuthBackend::new(stores.auth()), sessions).build();
    Ok(Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/password", post(change_password))
        .route("/logout", post(logout))
        .layer(auth))
}

/// A user as the API shows it: everything but the password hash.
#[derive(Debug, Serialize)]
struct UserOut {
    id: UserId,
    email: String,
    is_active: bool,
    is_superuser: bool,
    is_verified: bool,
    created_at: DateTime<Utc>,
}

impl From<User> for UserOut {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            is_active: user.is_active,
            is_superuser: user.is_superuser,
            is_verified: user.is_verified,
            created_at: user.created_at,
        }
    }
}

async fn register(
    auth: AuthSession,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    check_password(&body.password)?;
    // Refuse a malformed email before spending a hash on it; the store checks it again.
    storekit::normalize_email(&body.email)?;
    let hash = auth.backend.hash_password(&body.password).await?;
    // Uniqueness is the database's decision, made atomically: no read-then-write race here.
    let user = auth
        .backend
        .users()
        .create_user(NewUser::new(body.email, hash))
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

async fn login(
    mut auth: AuthSession,
    Json(credentials): Json<Credentials>,
) -> Result<Json<UserOut>, ApiError> {
    // A wrong password, an unknown email, a malformed one and an inactive user look alike.
    let user = auth
        .authenticate(credentials)
        .await?
        .ok_or(ApiError::BadCredentials)?;
    // A new session id at login, so one planted before it cannot be taken over.
    auth.login(&user).await?;
    Ok(Json(user.into_user().into()))
}

async fn me(auth: AuthSession) -> Result<Json<UserOut>, ApiError> {
    let user = auth.user.ok_or(ApiError::Unauthorized)?;
    Ok(Json(user.into_user().into()))
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

// Hand-written so that a password never reaches a log line.
impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// A new hash changes the user's session auth hash: every other session of the user ends at
/// its next request. This one is logged in again with the new hash, so it stays.
async fn change_password(
    mut auth: AuthSession,
    Json(body): Json<NewPassword>,
) -> Result<StatusCode, ApiError> {
    let user = auth.user.clone().ok_or(ApiError::Unauthorized)?;
    check_password(&body.password)?;
    let hash = auth.backend.hash_password(&body.password).await?;
    let updated = auth
        .backend
        .users()
        .update_user(user.user().id, UserPatch::new().hashed_password(hash))
        .await?;
    auth.login(&LoginUser::from(updated)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout(mut auth: AuthSession) -> Result<StatusCode, ApiError> {
    auth.logout().await?.ok_or(ApiError::Unauthorized)?;
    Ok(StatusCode::NO_CONTENT)
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::InvalidPassword(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidPassword(format!(
            "must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Every way a request can fail, and (in `into_response`, the one place) its status code.
#[derive(Debug)]
enum ApiError {
    Store(Error),
    InvalidPassword(String),
    BadCredentials,
    Unauthorized,
    Internal(String),
}

impl ApiError {
    fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{what}: {error}"))
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::Store(error)
    }
}

impl From<axum_login::Error<AuthBackend>> for ApiError {
    fn from(error: axum_login::Error<AuthBackend>) -> Self {
        match error {
            axum_login::Error::Backend(error) => Self::Store(error),
            axum_login::Error::Session(error) => Self::internal("session", error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            Self::Store(Error::AlreadyExists { what }) => {
                (StatusCode::CONFLICT, format!("{what} already registered"))
            }
            Self::Store(e @ (Error::InvalidInput { .. } | Error::ValueTooLarge { .. })) => {
                (StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            Self::Store(e @ Error::NotFound { .. }) => (StatusCode::NOT_FOUND, e.to_string()),
            Self::Store(e @ Error::Conflict { .. }) => (StatusCode::CONFLICT, e.to_string()),
            Self::Store(e) if e.is_retryable() => {
                log_error(chain(&e));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "try again later".to_owned(),
                )
            }
            Self::Store(e) => {
                log_error(chain(&e));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
            Self::InvalidPassword(why) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid password: {why}"),
            ),
            Self::BadCredentials => (StatusCode::UNAUTHORIZED, "bad credentials".to_owned()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
            Self::Internal(what) => {
                log_error(what);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "detail": detail }))).into_response()
    }
}

/// Parses the environment variable `name` as a number, if it is set.
fn env_number<T>(name: &str) -> Result<Option<T>, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map(Some)
            .map_err(|e| format!("{name}={text:?}: {e}")),
        Err(_) => Ok(None),
    }
}

/// With `RUST_LOG` set (e.g. `RUST_LOG=storekit=debug`), prints one line to stderr per storekit
/// call as its span closes, with the span's fields (operation, collection, outcome, counts).
fn log_spans_if_asked() {
    use tracing_subscriber::fmt::format::FmtSpan;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
}

#[allow(clippy::print_stdout)] // A server's start-up line is the point; tests read it.
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

/// Logs a server-side failure; the client only sees a status.
#[allow(clippy::print_stderr)] // An example without a logging framework: stderr is the log.
fn log_error(what: impl std::fmt::Display) {
    eprintln!("error: {what}");
}

/// An error and its sources, `outer: inner: …`, so that the log keeps the whole chain.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line = format!("{line}: {cause}");
        source = cause.source();
    }
    line
}
