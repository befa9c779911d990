//! The span of every store call counts the DynamoDB requests it sent and the capacity they
//! consumed, against the endpoint in `STOREKIT_DYNAMODB_ENDPOINT` (DynamoDB Local, which reports
//! `ConsumedCapacity` when asked). Its own test binary, because it installs the global
//! subscriber.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region};
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use aws_smithy_runtime_api::box_error::BoxError;
use storekit_core::KvStore;
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};
use tracing::field::{Field, Visit};
use tracing::instrument::WithSubscriber as _;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::NoSubscriber;
use tracing::{Subscriber, subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A field's value as recorded.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(f64),
}

/// The fields of one span, as recorded when it was opened and since.
#[derive(Debug, Default, Clone)]
struct Fields(HashMap<&'static str, Value>);

impl Fields {
    fn text(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }

    fn number(&self, name: &str) -> Option<f64> {
        match self.0.get(name) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name(), Value::Number(value));
    }

    #[allow(clippy::cast_precision_loss)] // counts in a test, far below 2^52
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name(), Value::Number(value as f64));
    }

    #[allow(clippy::cast_precision_loss)]
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name(), Value::Number(value as f64));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), Value::Text(value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name(), Value::Text(format!("{value:?}")));
    }
}

/// The storekit spans closed so far: name and fields.
#[derive(Debug, Default, Clone)]
struct Closed(Arc<Mutex<Vec<(&'static str, Fields)>>>);

impl Closed {
    fn spans(&self) -> MutexGuard<'_, Vec<(&'static str, Fields)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fields of the only closed span named `name`.
    fn only(&self, name: &str) -> Fields {
        let spans = self.spans();
        let found: Vec<&Fields> = spans
            .iter()
            .filter(|(span, _)| *span == name)
            .map(|(_, fields)| fields)
            .collect();
        assert_eq!(found.len(), 1, "spans named {name}: {spans:?}");
        found[0].clone()
    }
}

impl<S> Layer<S> for Closed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != storekit_core::trace::TARGET {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(fields) = span.extensions_mut().remove::<Fields>()
        {
            self.spans().push((span.name(), fields));
        }
    }
}

#[tokio::test]
async fn spans_count_the_requests_and_capacity_of_each_call() {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let closed = Closed::default();
    subscriber::set_global_default(tracing_subscriber::registry().with(closed.clone()))
        .expect("the only subscriber of this test binary");

    let mut prefix = [0u8; 5];
    getrandom::fill(&mut prefix).expect("randomness");
    let prefix: String = prefix.iter().map(|b| format!("{b:02x}")).collect();
    let config = DynamoDbConfig::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials("storekit", "storekit")
        .table_prefix(format!("spans{prefix}_"))
        .build()
        .expect("config");
    let store = DynamoDbStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    let set = store.set("spans", "k", b"v", None).await;
    let got = store.get("spans", "k").await;
    let set_many = store
        .set_many("spans", &[("a", b"1"), ("b", b"2")], None)
        .await;
    store.drop_tables().await.expect("drop_tables");
    set.expect("set");
    assert_eq!(got.expect("get").as_deref(), Some(&b"v"[..]));
    set_many.expect("set_many");

    // Migrating and dropping tables are not store calls: no span, and nothing counted.
    for (name, fields) in closed.spans().iter() {
        assert!(
            ["set", "get", "set_many"].contains(name),
            "unexpected span {name}: {fields:?}"
        );
    }
    // Each of these calls is one request (PutItem, GetItem, one BatchWriteItem), which
    // consumes at least some capacity.
    for name in ["set", "get", "set_many"] {
        let fields = closed.only(name);
        assert_eq!(
            fields.text("db.system.name"),
            Some("aws.dynamodb"),
            "{name}"
        );
        assert_eq!(fields.text("storekit.backend"), Some("dynamodb"), "{name}");
        assert_eq!(fields.text("db.operation.name"), Some(name), "{name}");
        assert_eq!(fields.text("storekit.outcome"), Some("ok"), "{name}");
        assert_eq!(
            fields.number("aws.dynamodb.request_count"),
            Some(1.0),
            "{name}: {fields:?}"
        );
        let capacity = fields
            .number("aws.dynamodb.consumed_capacity")
            .unwrap_or_default();
        assert!(capacity > 0.0, "{name}: {fields:?}");
    }
}

/// The `ReturnConsumedCapacity` of every PutItem, as sent.
#[derive(Debug, Clone, Default)]
struct AskedCapacity(Arc<Mutex<Vec<Option<ReturnConsumedCapacity>>>>);

impl Intercept for AskedCapacity {
    fn name(&self) -> &'static str {
        "storekit-test-capacity-recorder"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(put) = context.input().downcast_ref::<PutItemInput>() {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(put.return_consumed_capacity().cloned());
        }
        Ok(())
    }
}

/// A call whose span nobody records does not ask DynamoDB for the capacity it consumes (the
/// span is the only place the figure goes); one whose span is recorded does.
#[tokio::test]
async fn only_a_traced_call_asks_for_its_consumed_capacity() {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let asked = AskedCapacity::default();
    let client_config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("storekit", "storekit", None, None, "test"))
        .interceptor(asked.clone())
        .build();
    let mut prefix = [0u8; 5];
    getrandom::fill(&mut prefix).expect("randomness");
    let prefix: String = prefix.iter().map(|b| format!("{b:02x}")).collect();
    let config = DynamoDbConfig::builder()
        .table_prefix(format!("capacity{prefix}_"))
        .build()
        .expect("config");
    let store = DynamoDbStore::from_client(Client::from_conf(client_config), &config);
    store.migrate().await.expect("migrate");
    let untraced = store
        .set("capacity", "a", b"1", None)
        .with_subscriber(NoSubscriber::default())
        .await;
    let traced = store
        .set("capacity", "b", b"2", None)
        .with_subscriber(tracing_subscriber::registry().with(Closed::default()))
        .await;
    store.drop_tables().await.expect("drop_tables");
    untraced.expect("untraced set");
    traced.expect("traced set");
    assert_eq!(
        *asked.0.lock().unwrap_or_else(PoisonError::into_inner),
        [None, Some(ReturnConsumedCapacity::Total)]
    );
}
