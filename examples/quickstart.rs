//! storekit in one page: a user, a login token and a cached value, on an embedded SQLite file.
//!
//! ```sh
//! cargo run --example quickstart                       # ./storekit-quickstart.db
//! DATABASE_URL=memory:// cargo run --example quickstart
//! RUST_LOG=storekit=debug cargo run --example quickstart   # and a span per storekit call
//! ```

use std::time::Duration;

use storekit::{Error, KvStoreExt as _, NewUser, UserPatch};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Profile {
    display_name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    log_spans_if_asked();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://storekit-quickstart.db".to_owned());
    let stores = storekit::connect(&url).await?;
    stores.migrate().await?;
    let (users, kv) = (stores.auth(), stores.kv());
    say(format!("connected to {} ({url})", stores.backend()));

    // Emails are unique ignoring case, so a second run finds the user made by the first.
    let new = NewUser::new("Ada.Lovelace@Example.com", "$argon2id$v=19$not-a-real-hash")
        .with_extra(&Profile {
            display_name: "Ada".into(),
        })?;
    let user = match users.create_user(new).await {
        Ok(user) => {
            say(format!("created user {} <{}>", user.id, user.email));
            user
        }
        Err(Error::AlreadyExists { .. }) => {
            let user = users.get_user_by_email("ada.lovelace@example.com").await?;
            let user = user.ok_or("the user vanished")?;
            say(format!("found existing user {} <{}>", user.id, user.email));
            user
        }
        Err(e) => return Err(e.into()),
    };
    let profile: Profile = user.extra_as()?;
    say(format!("profile: {profile:?}, version {}", user.version));

    let verified = users
        .update_user(
            user.id,
            UserPatch::new().verified(true).if_version(user.version),
        )
        .await?;
    say(format!(
        "verified the email: version {} -> {}",
        user.version, verified.version
    ));

    let login = users.create_access_token(user.id).await?;
    let session = users
        .get_access_token(&login.token, Some(Duration::from_secs(3600)))
        .await?
        .ok_or("the token was not found")?;
    say(format!(
        "logged in: token for user {} issued at {}",
        session.user_id, session.created_at
    ));

    let ttl = Some(Duration::from_secs(60));
    kv.set_json(
        "greetings",
        "ada",
        &format!("Hello, {}!", profile.display_name),
        ttl,
    )
    .await?;
    let greeting: Option<String> = kv.get_json("greetings", "ada").await?;
    say(format!("cached for 60 s: {greeting:?}"));
    let visits = kv.increment("visits", "ada", 1, None).await?;
    say(format!("visit number {visits}"));

    users.delete_access_token(&login.token).await?;
    say("logged out");
    Ok(())
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

#[allow(clippy::print_stdout)] // An example's output is the point.
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}
