//! Cases for what an operator sees: one `tracing` span per store call, with OpenTelemetry's
//! database fields, and no value, email or secret in any of them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use futures::TryStreamExt as _;
use storekit_core::{NewOAuthAccount, NewUser, UserId};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::Fixture;

/// A closed storekit span: its name and the fields recorded on it, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedSpan {
    /// The span's name: the operation.
    pub name: &'static str,
    /// Every field recorded on it, by name.
    pub fields: BTreeMap<String, String>,
    /// False for a span opened inside another storekit span (a call a store made itself).
    pub top_level: bool,
}

impl CapturedSpan {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Collects the spans of target `storekit` opened on one thread while it is armed, for tests
/// (here and in an application's own) that check what a call shows.
#[derive(Debug, Clone, Default)]
pub struct SpanCapture {
    closed: Arc<Mutex<Vec<CapturedSpan>>>,
}

thread_local! {
    static ARMED: RefCell<Option<SpanCapture>> = const { RefCell::new(None) };
}

/// Disarms the capture when dropped.
#[derive(Debug)]
pub struct Armed {
    _scoped: Option<tracing::subscriber::DefaultGuard>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.with(|armed| armed.borrow_mut().take());
    }
}

impl SpanCapture {
    /// Captures the storekit spans opened on this thread until the returned guard drops.
    ///
    /// The capturing layer is installed as the global subscriber, once per process: a
    /// thread-local subscriber would miss spans whose sites other threads reached first, since
    /// `tracing` caches per site whether anyone listens. If the process already has a global
    /// subscriber, this falls back to a thread-local one, which is exact only when no other
    /// thread runs storekit calls at the same time.
    #[must_use]
    pub fn arm(&self) -> Armed {
        static GLOBAL: OnceLock<bool> = OnceLock::new();
        let global = *GLOBAL.get_or_init(|| {
            let subscriber = tracing_subscriber::registry().with(Router);
            tracing::subscriber::set_global_default(subscriber).is_ok()
        });
        ARMED.with(|armed| *armed.borrow_mut() = Some(self.clone()));
        let scoped = (!global).then(|| {
            let scoped =
                tracing::subscriber::set_default(tracing_subscriber::registry().with(Router));
            tracing::callsite::rebuild_interest_cache();
            scoped
        });
        Armed { _scoped: scoped }
    }

    /// The spans closed so far, oldest first; the capture is emptied.
    #[must_use]
    pub fn take(&self) -> Vec<CapturedSpan> {
        std::mem::take(&mut *self.closed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A span being captured, kept in the span's extensions until it closes.
struct Open {
    capture: SpanCapture,
    fields: Fields,
    top_level: bool,
}

/// The layer: hands each storekit span opened on an armed thread to that thread's capture.
struct Router;

impl<S> Layer<S> for Router
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != storekit_core::trace::TARGET {
            return;
        }
        let Some(capture) = ARMED.with(|armed| armed.borrow().clone()) else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let top_level = !span
            .scope()
            .skip(1)
            .any(|outer| outer.metadata().target() == storekit_core::trace::TARGET);
        span.extensions_mut().insert(Open {
            capture,
            fields,
            top_level,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut open.fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        open.capture
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(CapturedSpan {
                name: span.metadata().name(),
                fields: open.fields.0,
                top_level: open.top_level,
            });
    }
}

/// Each database's OpenTelemetry `db.system.name`, with the backend's one name beside it (what
/// errors and `Stores::backend()` say), which spans carry as `storekit.backend`.
const SYSTEMS: [(&str, &str); 4] = [
    ("sqlite", "sqlite"),
    ("postgresql", "postgres"),
    ("aws.dynamodb", "dynamodb"),
    ("memory", "memory"),
];

/// One op of each store trait opens exactly one span named after it, carrying the database
/// system, the operation, the collection, the outcome and the item counts; DynamoDB's spans
/// carry its request count and consumed capacity; no field holds a value, email or secret.
pub async fn every_call_opens_one_span_with_database_fields(f: &Fixture) {
    let capture = SpanCapture::default();
    // The case runs on the test's own thread (`block_on`), where the stores open their spans.
    let _armed = capture.arm();

    const EMAIL: &str = "observed.person@example.com";
    const HASH: &str = "$argon2id$observed-hash";
    const VALUE: &[u8] = b"observed-secret-value";
    let (kv, auth) = (&f.kv, &f.auth);
    kv.set("traced", "k1", VALUE, None).await.expect("set");
    assert_eq!(
        kv.get("traced", "k1").await.expect("get").as_deref(),
        Some(VALUE)
    );
    kv.set_many("traced", &[("k2", VALUE), ("k3", VALUE)], None)
        .await
        .expect("set_many");
    let listed: Vec<String> = kv.keys("traced", "k").try_collect().await.expect("keys");
    assert_eq!(listed.len(), 3);
    let user = auth
        .create_user(NewUser::new(EMAIL, HASH))
        .await
        .expect("create_user");
    let link = NewOAuthAccount::new("github", "observed-1", EMAIL, "oauth-secret-token");
    auth.add_oauth_account(user.id, link)
        .await
        .expect("add_oauth_account");
    let issued = auth
        .create_access_token(user.id)
        .await
        .expect("create_access_token");
    let found = auth
        .get_access_token(&issued.token, None)
        .await
        .expect("get_access_token");
    assert!(found.is_some());
    let foreign = match user.id {
        UserId::Uuid(_) => UserId::Int(1),
        UserId::Int(_) => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
    };
    let refused = auth.get_user(foreign).await;
    assert!(refused.is_err(), "an id of the other kind is refused");

    let spans: Vec<CapturedSpan> = capture.take().into_iter().filter(|s| s.top_level).collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "set",
            "get",
            "set_many",
            "keys",
            "create_user",
            "add_oauth_account",
            "create_access_token",
            "get_access_token",
            "get_user",
        ],
        "one span per call, in order: {spans:#?}"
    );
    let system = spans[0]
        .field("db.system.name")
        .unwrap_or_default()
        .to_owned();
    let backend = SYSTEMS
        .iter()
        .find(|(known, _)| *known == system)
        .map(|(_, backend)| *backend);
    assert!(backend.is_some(), "db.system.name {system:?}");
    let collections = [
        "traced",
        "traced",
        "traced",
        "traced",
        "users",
        "oauth_accounts",
        "access_tokens",
        "access_tokens",
        "users",
    ];
    for (span, collection) in spans.iter().zip(collections) {
        assert_eq!(
            span.field("db.system.name"),
            Some(system.as_str()),
            "{span:?}"
        );
        assert_eq!(span.field("storekit.backend"), backend, "{span:?}");
        assert_eq!(span.field("db.operation.name"), Some(span.name), "{span:?}");
        assert_eq!(
            span.field("db.collection.name"),
            Some(collection),
            "{span:?}"
        );
        let failed = span.name == "get_user";
        let outcome = if failed { "invalid_input" } else { "ok" };
        assert_eq!(span.field("storekit.outcome"), Some(outcome), "{span:?}");
        assert_eq!(
            span.field("error.type"),
            failed.then_some(outcome),
            "{span:?}"
        );
        if system == "aws.dynamodb" && !failed {
            let requests: u32 = span
                .field("aws.dynamodb.request_count")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(requests >= 1, "DynamoDB requests counted: {span:?}");
            let capacity: f64 = span
                .field("aws.dynamodb.consumed_capacity")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            assert!(capacity > 0.0, "DynamoDB capacity recorded: {span:?}");
        }
        let secrets = [
            EMAIL,
            HASH,
            "observed-secret-value",
            "oauth-secret-token",
            issued.token.as_str(),
            "k1",
        ];
        for (name, value) in &span.fields {
            for secret in secrets {
                assert!(
                    !value.contains(secret),
                    "{name} = {value:?} shows {secret:?}"
                );
            }
        }
    }
    let by_name = |name: &str| spans.iter().find(|s| s.name == name).expect("span");
    assert_eq!(by_name("get").field("db.response.returned_rows"), Some("1"));
    assert_eq!(
        by_name("set_many").field("db.operation.batch.size"),
        Some("2")
    );
    assert_eq!(
        by_name("keys").field("db.response.returned_rows"),
        Some("3")
    );
    assert_eq!(
        by_name("get_access_token").field("db.response.returned_rows"),
        Some("1")
    );
}
