//! An HTTP API for accounts on storekit's user store, with axum and argon2: register, log in for
//! an access token, read your own account with it, log out.
//!
//! ```sh
//! cargo run --example axum_users                     # ./storekit-users.db, http://127.0.0.1:3000
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --features postgres --example axum_users
//!
//! curl -i localhost:3000/register -H 'content-type: application/json' \
//!      -d '{"email": "ada@example.com", "password": "correct horse"}'
//! curl -s localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"email": "ADA@example.com", "password": "correct horse"}'    # {"access_token": …}
//! curl -s localhost:3000/me -H "authorization: Bearer $TOKEN"
//! curl -i -X POST localhost:3000/logout -H "authorization: Bearer $TOKEN"
//! ```
//!
//! | route | answer |
//! |---|---|
//! | `POST /register` `{email, password}` | `201` and the user (never the hash); `409` if the email is taken in any letter case; `422` for a malformed email or a short password |
//! | `POST /login` `{email, password}` | `{"access_token", "token_type"}`; `401` for a wrong password, an unknown email or an inactive user |
//! | `GET /me` with `Authorization: Bearer TOKEN` | the user; `401` without a valid, unexpired token |
//! | `POST /logout` with the token | `204`, and the token no longer works |
//!
//! Environment: `DATABASE_URL` (any storekit URL; default an SQLite file), `PORT` (default 3000,
//! on 127.0.0.1; `0` picks a free port), `TOKEN_MAX_AGE_SECS` (default one day). The server
//! migrates the database at start, so the same binary runs on SQLite, PostgreSQL and DynamoDB
//! by changing only `DATABASE_URL`. With `RUST_LOG=storekit=debug`, every storekit call a
//! request makes prints its span to stderr.

use std::net::Ipv4Addr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{self, PasswordHasher as _, PasswordVerifier as _};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storekit::chrono::{DateTime, Utc};
use storekit::{DynAuthStore, Error, NewUser, User, UserId};

/// How long a login lasts unless `TOKEN_MAX_AGE_SECS` says otherwise.
const TOKEN_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
const MIN_PASSWORD_CHARS: usize = 8;
/// Bounds the hashing work one anonymous request can ask for.
const MAX_PASSWORD_BYTES: usize = 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    log_spans_if_asked();
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://storekit-users.db".to_owned());
    let port: u16 = env_number("PORT")?.unwrap_or(3000);
    let token_max_age =
        env_number("TOKEN_MAX_AGE_SECS")?.map_or(TOKEN_MAX_AGE, Duration::from_secs);

    let stores = storekit::connect(&url).await?;
    stores.migrate().await?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    // The URL is not logged: it may hold a password.
    say(format!(
        "users API on {} listening on http://{}",
        stores.backend(),
        listener.local_addr()?
    ));
    axum::serve(listener, app(stores.auth(), token_max_age))
        .with_graceful_shutdown(async {
            // Without a signal handler there is nothing to wait for; stop serving only on Ctrl-C.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await?;
    Ok(())
}

/// The whole API over any user store; tests and other binaries can mount it as they like.
fn app(users: Arc<DynAuthStore>, token_max_age: Duration) -> Router {
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .with_state(AppState {
            users,
            token_max_age,
        })
}

#[derive(Debug, Clone)]
struct AppState {
    users: Arc<DynAuthStore>,
    token_max_age: Duration,
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

// Hand-written so that a password never reaches a log line.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
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

#[derive(Debug, Serialize)]
struct TokenOut {
    access_token: String,
    token_type: &'static str,
}

async fn register(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    check_password(&body.password)?;
    // Refuse a malformed email before spending a hash on it; the store checks it again.
    storekit::normalize_email(&body.email)?;
    let hash = hash_password(body.password).await?;
    // Uniqueness is the database's decision, made atomically: no read-then-write race here.
    let user = state
        .users
        .create_user(NewUser::new(body.email, hash))
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

async fn login(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> Result<Json<TokenOut>, ApiError> {
    let user = match state.users.get_user_by_email(&body.email).await {
        Ok(user) => user,
        // No account can have a malformed email: answer as for a wrong password.
        Err(Error::InvalidInput { .. } | Error::ValueTooLarge { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let hash = user.as_ref().map(|user| user.hashed_password.clone());
    if !verify_password(body.password, hash).await? {
        return Err(ApiError::BadCredentials);
    }
    match user {
        Some(user) if user.is_active => {
            let issued = state.users.create_access_token(user.id).await?;
            Ok(Json(TokenOut {
                access_token: issued.token,
                token_type: "bearer",
            }))
        }
        _ => Err(ApiError::BadCredentials),
    }
}

async fn me(CurrentUser { user, .. }: CurrentUser) -> Json<UserOut> {
    Json(user.into())
}

async fn logout(
    State(state): State<AppState>,
    CurrentUser { token, .. }: CurrentUser,
) -> Result<StatusCode, ApiError> {
    state.users.delete_access_token(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The active user that the request's bearer token logs in, and the token itself.
#[derive(Debug)]
struct CurrentUser {
    user: User,
    token: String,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let record = match state
            .users
            .get_access_token(token, Some(state.token_max_age))
            .await
        {
            Ok(Some(record)) => record,
            // Whatever a client sends as a token, a bad one is a 401, never a 4xx about input.
            Ok(None) | Err(Error::InvalidInput { .. } | Error::ValueTooLarge { .. }) => {
                return Err(ApiError::Unauthorized);
            }
            Err(e) => return Err(e.into()),
        };
        // A deactivated user's old tokens stop working at once.
        let user = state.users.get_user(record.user_id).await?;
        match user {
            Some(user) if user.is_active => Ok(Self {
                user,
                token: token.to_owned(),
            }),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
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

/// Hashes with Argon2id and a random salt, as a PHC string (`$argon2id$v=19$…`).
async fn hash_password(password: String) -> Result<String, ApiError> {
    // Argon2 spends tens of milliseconds of CPU on purpose: keep it off the async workers so
    // other requests keep being served meanwhile.
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|e| ApiError::internal("password hashing task", e))?
    .map_err(|e| ApiError::internal("password hashing", e))
}

/// True if `password` matches `hash`. Without a hash (unknown email) a dummy one is checked, so
/// that the response time does not tell which emails have accounts.
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    // Hashed once, with the same parameters as real hashes, so it costs the same to check.
    static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
        Argon2::default()
            .hash_password(b"not anyone's password")
            .map(|hash| hash.to_string())
            .ok()
    });
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match hash {
            Some(hash) => (Some(hash), true),
            None => (DUMMY_HASH.clone(), false),
        };
        let Some(hash) = hash else { return Ok(false) };
        match Argon2::default().verify_password(password.as_bytes(), hash.as_str()) {
            Ok(()) => Ok(real),
            Err(password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(ApiError::internal("password verification", e)),
        }
    })
    .await
    .map_err(|e| ApiError::internal("password verification task", e))?
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
            Self::Unauthorized => {
                let body = Json(serde_json::json!({ "detail": "unauthorized" }));
                // RFC 6750: a 401 for a bearer-protected resource names the scheme.
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    body,
                )
                    .into_response();
            }
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
