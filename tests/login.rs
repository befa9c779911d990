//! `storekit::login::AuthBackend` under `axum-login`'s own layer, with sessions in
//! `KvSessionStore`, in an axum app on a loopback socket, on every backend: logging in with an
//! email in any case and a password, refusals that do not tell which part was wrong, a password
//! change ending the other sessions, log out, deactivated and deleted users, permissions.

#![allow(clippy::print_stderr)]

mod common;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthzBackend as _};
use serde::Deserialize;
use storekit::login::{AuthBackend, Credentials, LoginUser};
use storekit::sessions::KvSessionStore;
use storekit::{MemoryStore, NewUser, Stores, UserPatch};
use tower_sessions::SessionManagerLayer;

type AuthSession = axum_login::AuthSession<AuthBackend>;

async fn login(mut auth: AuthSession, Json(creds): Json<Credentials>) -> StatusCode {
    match auth.authenticate(creds).await {
        Ok(Some(user)) => match auth.login(&user).await {
            Ok(()) => StatusCode::OK,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        },
        Ok(None) => StatusCode::UNAUTHORIZED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn me(auth: AuthSession) -> (StatusCode, String) {
    match auth.user {
        Some(user) => (StatusCode::OK, user.user().email.clone()),
        None => (StatusCode::UNAUTHORIZED, String::new()),
    }
}

async fn admin(auth: AuthSession) -> StatusCode {
    let Some(user) = &auth.user else {
        return StatusCode::UNAUTHORIZED;
    };
    match auth.backend.has_perm(user, "admin".to_owned()).await {
        Ok(true) => StatusCode::OK,
        Ok(false) => StatusCode::FORBIDDEN,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

/// Changes the password, and logs this session in again with the new hash so it stays.
async fn change_password(mut auth: AuthSession, Json(new): Json<NewPassword>) -> StatusCode {
    let Some(user) = auth.user.clone() else {
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(hash) = auth.backend.hash_password(&new.password).await else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let patch = UserPatch::new().hashed_password(hash);
    let Ok(updated) = auth
        .backend
        .users()
        .update_user(user.user().id, patch)
        .await
    else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    match auth.login(&LoginUser::from(updated)).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn logout(mut auth: AuthSession) -> StatusCode {
    match auth.logout().await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn serve(stores: &Stores, backend: AuthBackend) -> String {
    let sessions = SessionManagerLayer::new(KvSessionStore::new(stores.kv()));
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/admin", get(admin))
        .route("/password", post(change_password))
        .route("/logout", get(logout))
        .layer(AuthManagerLayerBuilder::new(backend, sessions).build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// A browser: one cookie, updated from every `Set-Cookie`.
struct Client {
    base: String,
    cookie: Option<String>,
}

impl Client {
    fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            cookie: None,
        }
    }

    async fn send(&mut self, path: &str, body: Option<serde_json::Value>) -> (StatusCode, String) {
        let http = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let mut request = match &body {
            Some(body) => http.post(url).json(body),
            None => http.get(url),
        };
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie.as_str());
        }
        let response = request.send().await.expect("request");
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set
                .to_str()
                .expect("ascii")
                .split(';')
                .next()
                .unwrap_or_default();
            self.cookie = Some(pair.to_owned());
        }
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        (status, response.text().await.expect("body"))
    }

    async fn login(&mut self, email: &str, password: &str) -> StatusCode {
        let body = serde_json::json!({"email": email, "password": password});
        self.send("/login", Some(body)).await.0
    }

    async fn me(&mut self) -> (StatusCode, String) {
        self.send("/me", None).await
    }
}

async fn exercise(stores: &Stores) {
    let backend = AuthBackend::new(stores.auth()).with_permissions_field("permissions");
    let users = stores.auth();
    let hash = backend.hash_password("correct horse").await.expect("hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let ada = users
        .create_user(
            NewUser::new("Ada@Example.com", hash.clone())
                .with_extra(&serde_json::json!({"permissions": ["admin"]}))
                .expect("extra"),
        )
        .await
        .expect("create");
    users
        .create_user(NewUser::new("off@example.com", hash.clone()).active(false))
        .await
        .expect("create");
    users
        .create_user(NewUser::new("bob@example.com", hash.clone()))
        .await
        .expect("create");
    let base = serve(stores, backend).await;

    // Refusals look alike: a wrong password, an unknown email, not an email, a deactivated user.
    let mut a = Client::new(&base);
    for (email, password) in [
        ("ada@example.com", "wrong"),
        ("nobody@example.com", "correct horse"),
        ("not an email", "correct horse"),
        ("off@example.com", "correct horse"),
    ] {
        assert_eq!(
            a.login(email, password).await,
            StatusCode::UNAUTHORIZED,
            "{email}"
        );
    }
    assert_eq!(a.me().await.0, StatusCode::UNAUTHORIZED);

    // Logged in with the email in another case; permissions from `extra`.
    assert_eq!(
        a.login("ADA@example.COM", "correct horse").await,
        StatusCode::OK
    );
    assert_eq!(a.me().await, (StatusCode::OK, "Ada@Example.com".to_owned()));
    assert_eq!(a.send("/admin", None).await.0, StatusCode::OK);
    let mut bob = Client::new(&base);
    assert_eq!(
        bob.login("bob@example.com", "correct horse").await,
        StatusCode::OK
    );
    assert_eq!(bob.send("/admin", None).await.0, StatusCode::FORBIDDEN);

    // A password change ends the other sessions and keeps the one that made it.
    let mut b = Client::new(&base);
    assert_eq!(
        b.login("ada@example.com", "correct horse").await,
        StatusCode::OK
    );
    assert_eq!(b.me().await.0, StatusCode::OK);
    let new = serde_json::json!({"password": "battery staple"});
    assert_eq!(a.send("/password", Some(new)).await.0, StatusCode::OK);
    assert_eq!(
        a.me().await.0,
        StatusCode::OK,
        "the session that changed it stays"
    );
    assert_eq!(
        b.me().await.0,
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );
    assert_eq!(
        bob.me().await.0,
        StatusCode::OK,
        "other users are untouched"
    );
    assert_eq!(
        b.login("ada@example.com", "correct horse").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.login("ada@example.com", "battery staple").await,
        StatusCode::OK
    );

    // Log out.
    assert_eq!(a.send("/logout", None).await.0, StatusCode::OK);
    assert_eq!(a.me().await.0, StatusCode::UNAUTHORIZED);

    // Deactivated, then deleted: the sessions end at their next request.
    users
        .update_user(ada.id, UserPatch::new().active(false))
        .await
        .expect("deactivate");
    assert_eq!(b.me().await.0, StatusCode::UNAUTHORIZED);
    let bob_user = users
        .get_user_by_email("bob@example.com")
        .await
        .expect("get")
        .expect("bob");
    users.delete_user(bob_user.id).await.expect("delete");
    assert_eq!(bob.me().await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let creds: Credentials =
        serde_json::from_value(serde_json::json!({"email": "a@b.c", "password": "hunter2"}))
            .expect("credentials");
    assert!(!format!("{creds:?}").contains("hunter2"));
    let store = MemoryStore::new();
    let user = storekit::UserStore::create_user(&store, NewUser::new("a@b.c", "$argon2id$secret"))
        .await
        .expect("create");
    let debug = format!("{:?}", LoginUser::from(user));
    assert!(
        !debug.contains("secret") && debug.contains("a@b.c"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_on_memory() {
    exercise(&Stores::from(MemoryStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_on_sqlite() {
    let stores = common::open(&common::sqlite_url("login")).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_on_postgres() {
    let Some(url) = common::postgres_url("login") else {
        return;
    };
    let stores = common::open(&url).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_on_dynamodb() {
    let Some(url) = common::dynamodb_url("login") else {
        return;
    };
    let stores = common::open(&url).await;
    exercise(&stores).await;
    stores.drop_tables().await.expect("drop");
}
