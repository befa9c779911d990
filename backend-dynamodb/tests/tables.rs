//! The tables store on DynamoDB Local (`STOREKIT_DYNAMODB_ENDPOINT`), beyond the conformance
//! suite: how many requests each call sends (from the `aws.dynamodb.request_count` of its
//! span), the marker items that hold unique values, and a table made outside storekit (as
//! Terraform would make it, filled as a PynamoDB model would fill it) adopted as it is. Its own
//! test binary, because it installs the global subscriber.

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType, TimeToLiveStatus};
use serde_json::{Value, json};
use storekit_conformance::assert_matches;
use storekit_core::Error;
use storekit_core::table::{
    Condition, Document, KeyDef, KeyValue, Patch, Query, RecordKey, Returning, Scan, TableSchema,
    TableStatus, TableStore, Transaction,
};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use raw::{create_raw, doc, get_raw, put_raw, suffix};

/// The request count, records read and table of a closed storekit span.
#[derive(Debug, Default, Clone)]
struct Counted {
    table: String,
    requests: u64,
    read: Option<u64>,
}

impl Visit for Counted {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "aws.dynamodb.request_count" => self.requests = value,
            "storekit.records_read" => self.read = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or_default());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "db.collection.name" {
            self.table = value.to_owned();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// Every storekit span closed in this process: (operation, what it counted).
#[derive(Debug, Default, Clone)]
struct Spans(Arc<Mutex<Vec<(&'static str, Counted)>>>);

impl Spans {
    /// The global capture, installed once for the whole binary.
    fn global() -> &'static Spans {
        static SPANS: OnceLock<Spans> = OnceLock::new();
        SPANS.get_or_init(|| {
            let spans = Spans::default();
            subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
                .expect("the only subscriber of this test binary");
            spans
        })
    }

    /// The request counts of the `operation` calls on `table` closed so far, which are
    /// forgotten; the other tests' spans stay.
    fn take(&self, operation: &str, table: &str) -> Vec<u64> {
        self.take_counted(operation, table)
            .into_iter()
            .map(|counted| counted.requests)
            .collect()
    }

    /// What the `operation` calls on `table` closed so far counted, which are forgotten.
    fn take_counted(&self, operation: &str, table: &str) -> Vec<Counted> {
        let mut spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counts = Vec::new();
        spans.retain(|(name, counted)| {
            let ours = *name == operation && counted.table == table;
            if ours {
                counts.push(counted.clone());
            }
            !ours
        });
        counts
    }
}

impl<S> Layer<S> for Spans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != storekit_core::trace::TARGET {
            return;
        }
        let mut counted = Counted::default();
        attrs.record(&mut counted);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(counted);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(counted) = span.extensions_mut().get_mut::<Counted>()
        {
            values.record(counted);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(counted) = span.extensions_mut().remove::<Counted>()
        {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((span.name(), counted));
        }
    }
}

/// A store on fresh tables (a random prefix), or `None` without DynamoDB Local.
async fn store(name: &str) -> Option<DynamoDbStore> {
    let endpoint = common::endpoint()?;
    Spans::global();
    let config = DynamoDbConfig::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials("storekit", "storekit")
        .table_prefix(format!("{name}{}_", suffix()))
        .build()
        .expect("config");
    Some(DynamoDbStore::connect(&config).await.expect("connect"))
}

/// Runs `test` on a store on fresh tables (see [`store`]) and drops them after it; without
/// DynamoDB Local, does nothing.
async fn on_fresh_tables(name: &str, test: impl AsyncFnOnce(&DynamoDbStore)) {
    let Some(store) = store(name).await else {
        return;
    };
    test(&store).await;
    store.drop_tables().await.expect("drop_tables");
}

/// A table of this name (each test its own, so that spans tell them apart): a text id, a query
/// index on (group, rank) and a unique sku.
fn counted(name: &str) -> TableSchema {
    TableSchema::builder(name, KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema")
}

#[tokio::test]
async fn a_filtered_page_and_a_patch_send_the_requests_they_need() {
    on_fresh_tables("filt", async |store| {
        let spans = Spans::global();
        let schema = TableSchema::builder("filtered", KeyDef::text("p"))
            .sort_key(KeyDef::int("n"))
            .build()
            .expect("valid schema");
        store.ensure_table(&schema).await.expect("ensure_table");
        for n in 0..300 {
            let document = doc(json!({"p": "a", "n": n, "hit": n % 50 == 7}));
            store.insert(&schema, document).await.expect("insert");
        }
        let count = |op: &str| spans.take(op, "filtered");
        let hits = Query::table("a").filter(Condition::eq("hit", true));
        let numbers = |page: &storekit_core::table::QueryPage| -> Vec<i64> {
            page.items
                .iter()
                .map(|r| r.document["n"].as_i64().expect("n"))
                .collect()
        };
        let first = store
            .query(&schema, &hits.clone().limit(3))
            .await
            .expect("query");
        assert_eq!(numbers(&first), [7, 57, 107]);
        // The first Query reads 4 items (the page and one more) and matches none; the second
        // reads up to 1,000, which covers the partition.
        assert_eq!(
            count("query"),
            [2],
            "a filtered page: the Queries its matches need"
        );
        let rest = store
            .query(
                &schema,
                &hits.limit(3).after(first.next.expect("more pages")),
            )
            .await
            .expect("query");
        assert_eq!(numbers(&rest), [157, 207, 257]);
        assert!(rest.next.is_none());
        assert_eq!(count("query"), [2]);

        // `SET status, last_update` returning the new values, with a condition: one UpdateItem,
        // also when the condition refuses it.
        let key = RecordKey::with_sort("a", 7);
        let shipped = store
            .patch(
                &schema,
                &key,
                &Patch::new().set("status", "shipped").set("last_update", 17),
                Some(&Condition::eq("hit", true)),
                Returning::UpdatedNew,
            )
            .await
            .expect("patch");
        assert_eq!(
            Value::Object(shipped.document.expect("updated")),
            json!({"status": "shipped", "last_update": 17})
        );
        let refused = store
            .patch(
                &schema,
                &key,
                &Patch::new().add("views", 1),
                Some(&Condition::eq("hit", false)),
                Returning::None,
            )
            .await;
        assert_matches!(
            refused,
            Err(Error::Conflict {
                what: "condition",
                ..
            })
        );
        assert_eq!(count("patch"), [1, 1], "a patch: one UpdateItem");
    })
    .await;
}

/// A filtered page over a partition where 1 record in 50 matches: the Queries (or Scans) it
/// needed and the items they read (the sum of `ScannedCount`) are on its span and in
/// `QueryPage::read`; a read budget bounds both, and the next page continues exactly.
#[tokio::test]
async fn a_filtered_page_reports_its_requests_and_reads() {
    on_fresh_tables("reads", async |store| {
        let spans = Spans::global();
        let schema = TableSchema::builder("reads", KeyDef::text("p"))
            .sort_key(KeyDef::int("n"))
            .build()
            .expect("valid schema");
        store.ensure_table(&schema).await.expect("ensure_table");
        for chunk in (0..500).collect::<Vec<i64>>().chunks(25) {
            let documents = chunk
                .iter()
                .map(|&n| doc(json!({"p": "a", "n": n, "hit": n % 50 == 7})))
                .collect();
            store.put_many(&schema, documents).await.expect("put_many");
        }
        let numbers = |page: &storekit_core::table::QueryPage| -> Vec<i64> {
            page.items
                .iter()
                .map(|r| r.document["n"].as_i64().expect("n"))
                .collect()
        };
        let one = |op: &str| -> (u64, Option<u64>) {
            let counted = spans.take_counted(op, "reads");
            assert_eq!(counted.len(), 1, "{op}: {counted:?}");
            (counted[0].requests, counted[0].read)
        };
        let hits = Condition::eq("hit", true);

        // The first Query reads 4 items (the page and one more) and matches none; the second
        // reads up to 1,000, which covers the partition: 2 Queries, 500 items read.
        let page = store
            .query(&schema, &Query::table("a").filter(hits.clone()).limit(3))
            .await
            .expect("query");
        assert_eq!(numbers(&page), [7, 57, 107]);
        assert_eq!(page.read, 500);
        assert_eq!(one("query"), (2, Some(500)));

        // The same over a Scan of the table.
        let page = store
            .scan(&schema, &Scan::new().filter(hits.clone()).limit(3))
            .await
            .expect("scan");
        assert_eq!(numbers(&page), [7, 57, 107]);
        assert_eq!(page.read, 500);
        assert_eq!(one("scan"), (2, Some(500)));

        // A budget of 100 items: 4 read, then the 96 left; the page ends on the 100th item,
        // short, and the next starts after it.
        let budgeted = Query::table("a")
            .filter(hits.clone())
            .limit(3)
            .read_budget(100);
        let first = store.query(&schema, &budgeted).await.expect("query");
        assert_eq!(numbers(&first), [7, 57]);
        assert_eq!(first.read, 100);
        assert_eq!(one("query"), (2, Some(100)));
        let second = store
            .query(&schema, &budgeted.after(first.next.expect("cut short")))
            .await
            .expect("query");
        assert_eq!(numbers(&second), [107, 157]);
        assert_eq!(second.read, 100);
        assert_eq!(one("query"), (2, Some(100)));
    })
    .await;
}

#[tokio::test]
async fn batches_and_expiring_records_send_the_requests_they_need() {
    on_fresh_tables("batch", async |store| {
        let spans = Spans::global();
        let schema = TableSchema::builder("batched", KeyDef::text("id"))
            .ttl("expires_at")
            .build()
            .expect("valid schema");
        store.ensure_table(&schema).await.expect("ensure_table");
        let described = store
            .client()
            .describe_time_to_live()
            .table_name(format!("{}batched", store.config().table_prefix()))
            .send()
            .await
            .expect("describe_time_to_live")
            .time_to_live_description
            .expect("a description");
        assert_eq!(described.attribute_name(), Some("expires_at"));
        assert_matches!(
            described.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        );
        let count = |op: &str| spans.take(op, "batched");
        spans.take("ensure_table", "batched");

        let documents: Vec<Document> = (0..60)
            .map(|i| doc(json!({"id": format!("r{i}"), "expires_at": 1})))
            .collect();
        let written = store.put_many(&schema, documents).await.expect("put_many");
        assert!(written.iter().all(|r| r.version == 1));
        assert_eq!(
            count("put_many"),
            [4],
            "put_many of 60: one BatchGetItem for the versions, three BatchWriteItem of 25"
        );
        // Expired (at 1970-01-01T00:00:01) and never returned: a GetItem, checked after.
        assert_eq!(store.get(&schema, &"r0".into()).await.expect("get"), None);
        assert_eq!(count("get"), [1], "get: one GetItem");
        let keys: Vec<RecordKey> = (0..60).map(|i| format!("r{i}").into()).collect();
        store
            .delete_many(&schema, &keys)
            .await
            .expect("delete_many");
        assert_eq!(
            count("delete_many"),
            [3],
            "delete_many of 60: three BatchWriteItem"
        );
    })
    .await;
}

#[tokio::test]
async fn each_call_sends_the_fewest_requests_dynamodb_allows() {
    on_fresh_tables("reqs", async |store| {
        let spans = Spans::global();
        let schema = counted("counted");
        store.ensure_table(&schema).await.expect("ensure_table");
        let count = |op: &str| spans.take(op, "counted");

        store
            .insert(&schema, doc(json!({"id": "a", "group": "g", "rank": 1})))
            .await
            .expect("insert");
        assert_eq!(count("insert"), [1], "insert: one PutItem");
        store
            .insert(&schema, doc(json!({"id": "b", "sku": "S1"})))
            .await
            .expect("insert");
        assert_eq!(
            count("insert"),
            [1],
            "with a unique value: one TransactWriteItems"
        );
        let taken = store
            .insert(&schema, doc(json!({"id": "c", "sku": "S1"})))
            .await;
        assert_matches!(
            taken,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        );
        // The refused transaction, and the GetItem showing that the holder holds the value.
        assert_eq!(count("insert"), [2]);

        store.get(&schema, &"a".into()).await.expect("get");
        assert_eq!(count("get"), [1], "get: one GetItem");
        store
            .contains(&schema, &"a".into())
            .await
            .expect("contains");
        assert_eq!(count("contains"), [1], "contains: one GetItem");

        let put = store
            .put(&schema, doc(json!({"id": "new"})))
            .await
            .expect("put");
        assert_eq!(
            (put.version, count("put")),
            (1, vec![1]),
            "put of a new record"
        );
        let put = store
            .put(&schema, doc(json!({"id": "a", "group": "g", "rank": 2})))
            .await
            .expect("put");
        assert_eq!(
            (put.version, count("put")),
            (2, vec![2]),
            "put over a record: the refused PutItem returns its version"
        );
        store
            .replace(&schema, doc(json!({"id": "b", "sku": "S1", "n": 1})), 1)
            .await
            .expect("replace");
        assert_eq!(
            count("replace"),
            [1],
            "replace keeping the unique value: one PutItem"
        );
        store
            .replace(&schema, doc(json!({"id": "b", "sku": "S2"})), 2)
            .await
            .expect("replace");
        assert_eq!(
            count("replace"),
            [2],
            "replace moving the unique value: a refused PutItem, then the transaction"
        );
        let stale = store
            .replace(&schema, doc(json!({"id": "b", "sku": "S2"})), 1)
            .await;
        assert_matches!(
            stale,
            Err(Error::Conflict {
                expected: 1,
                actual: 3,
                ..
            })
        );
        assert_eq!(
            count("replace"),
            [1],
            "a conflict is the write's own answer"
        );

        store
            .get_by_unique(&schema, "sku", &[KeyValue::from("S2")])
            .await
            .expect("get_by_unique")
            .expect("found");
        assert_eq!(count("get_by_unique"), [2], "the marker, then the record");

        store
            .query(&schema, &Query::table("a"))
            .await
            .expect("query");
        store
            .query(&schema, &Query::index("by-group", "g"))
            .await
            .expect("query");
        assert_eq!(count("query"), [1, 1], "a page under 1 MB: one Query");

        for i in 0..150 {
            store
                .put(&schema, doc(json!({"id": format!("k{i:03}")})))
                .await
                .expect("put");
        }
        let keys: Vec<RecordKey> = (0..250).map(|i| format!("k{i:03}").into()).collect();
        let found = store.get_many(&schema, &keys).await.expect("get_many");
        assert_eq!(found.iter().flatten().count(), 150);
        assert_eq!(count("get_many"), [3], "250 keys: three BatchGetItem");

        assert!(
            store
                .delete(&schema, &"new".into(), None)
                .await
                .expect("delete")
        );
        assert!(
            !store
                .delete(&schema, &"new".into(), None)
                .await
                .expect("delete")
        );
        // Records with unique indexes are read first, to know their markers.
        assert_eq!(count("delete"), [2, 1]);
        assert!(
            store
                .delete(&schema, &"b".into(), Some(3))
                .await
                .expect("delete")
        );
        assert_eq!(
            count("delete"),
            [2],
            "GetItem, then the transaction with the marker"
        );
    })
    .await;
}

/// The marker of `value` in `marked`'s `sku` index, if it exists: its `holder`.
async fn marker(store: &DynamoDbStore, value: &str) -> Option<String> {
    let table = format!("{}storekit_unique", store.config().table_prefix());
    let pk = format!("marked#sku#t{}:{value}", value.len());
    let item = store
        .client()
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S("UNIQUE".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get marker")
        .item?;
    match item.get("holder") {
        Some(AttributeValue::S(holder)) => Some(holder.clone()),
        other => panic!("a marker without a holder: {other:?}"),
    }
}

#[tokio::test]
async fn markers_are_claimed_moved_and_released_with_their_records() {
    on_fresh_tables("mark", async |store| {
        let schema = counted("marked");
        store.ensure_table(&schema).await.expect("ensure_table");
        store
            .insert(&schema, doc(json!({"id": "r1", "sku": "X"})))
            .await
            .expect("insert");
        assert_eq!(marker(store, "X").await.as_deref(), Some("t2:r1"));

        let mut to_y = |mut d: Document| {
            d.insert("sku".into(), json!("Y"));
            Ok(d)
        };
        store
            .update(&schema, &"r1".into(), &mut to_y)
            .await
            .expect("update");
        assert_eq!(marker(store, "X").await, None, "the old value is released");
        assert_eq!(marker(store, "Y").await.as_deref(), Some("t2:r1"));
        store
            .insert(&schema, doc(json!({"id": "r2", "sku": "X"})))
            .await
            .expect("X is free at once");
        assert_eq!(marker(store, "X").await.as_deref(), Some("t2:r2"));

        assert!(
            store
                .delete(&schema, &"r1".into(), None)
                .await
                .expect("delete")
        );
        assert_eq!(
            marker(store, "Y").await,
            None,
            "a delete releases its values"
        );
        store
            .put(&schema, doc(json!({"id": "r2"})))
            .await
            .expect("put without a sku");
        assert_eq!(
            marker(store, "X").await,
            None,
            "a value dropped is released"
        );

        // A marker another client left behind (its record no longer holds the value) does not
        // keep the value taken.
        store
            .insert(&schema, doc(json!({"id": "r3", "sku": "Z"})))
            .await
            .expect("insert");
        let table = format!("{}marked", store.config().table_prefix());
        put_raw(
            store.client(),
            &table,
            [("id", AttributeValue::S("r3".into()))],
        )
        .await;
        store
            .insert(&schema, doc(json!({"id": "r4", "sku": "Z"})))
            .await
            .expect("a stale marker is cleared");
        assert_eq!(marker(store, "Z").await.as_deref(), Some("t2:r4"));

        assert!(store.drop_table(&schema).await.expect("drop_table"));
        assert_eq!(
            marker(store, "Z").await,
            None,
            "dropping a table drops its markers"
        );
    })
    .await;
}

/// Every marker of table `table`'s unique index `index`, by a scan of the marker table.
async fn markers_of(store: &DynamoDbStore, table: &str, index: &str) -> Vec<String> {
    let markers = format!("{}storekit_unique", store.config().table_prefix());
    let prefix = format!("{table}#{index}#");
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let output = store
            .client()
            .scan()
            .table_name(&markers)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan markers");
        for item in output.items() {
            if let Some(AttributeValue::S(pk)) = item.get("pk")
                && pk.starts_with(&prefix)
            {
                found.push(pk.clone());
            }
        }
        match output.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return found,
        }
    }
}

#[tokio::test]
async fn a_refused_unique_index_leaves_no_marker_behind() {
    on_fresh_tables("left", async |store| {
        let before = TableSchema::builder("grown", KeyDef::text("id"))
            .build()
            .expect("valid schema");
        let after = TableSchema::builder("grown", KeyDef::text("id"))
            .unique("sku", [KeyDef::text("sku")])
            .build()
            .expect("valid schema");
        store.ensure_table(&before).await.expect("ensure_table");
        // Many distinct values and one taken twice: markers are claimed for the distinct ones
        // before the duplicate is met, whatever the scan's order.
        for i in 0..40 {
            store
                .insert(
                    &before,
                    doc(json!({"id": format!("r{i:02}"), "sku": format!("s{i}")})),
                )
                .await
                .expect("insert");
        }
        store
            .insert(&before, doc(json!({"id": "dup", "sku": "s7"})))
            .await
            .expect("insert");
        let refused = store.ensure_table(&after).await;
        assert_matches!(
            refused,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        );
        assert_eq!(
            markers_of(store, "grown", "sku").await,
            Vec::<String>::new()
        );
        assert_eq!(
            store.ensure_table(&before).await.expect("as it was"),
            TableStatus::Unchanged
        );
        assert!(
            store
                .delete(&before, &"dup".into(), None)
                .await
                .expect("delete")
        );
        assert_eq!(
            store.ensure_table(&after).await.expect("now unique"),
            TableStatus::IndexesAdded(vec!["sku".to_owned()])
        );
        assert_eq!(markers_of(store, "grown", "sku").await.len(), 40);
    })
    .await;
}

#[tokio::test]
async fn a_name_too_long_with_its_prefix_is_refused_as_on_postgres() {
    // A prefix of 29 bytes and a name of 40: 69, over the 63 every backend allows.
    let Some(store) = store(&"p".repeat(20)).await else {
        return;
    };
    let longest = TableSchema::builder("t".repeat(40), KeyDef::text("id"))
        .build()
        .expect("valid schema");
    let refused = store.ensure_table(&longest).await;
    assert_matches!(
        refused,
        Err(Error::InvalidInput {
            what: "table name",
            ..
        })
    );
    let fits = TableSchema::builder("t".repeat(34), KeyDef::text("id"))
        .build()
        .expect("valid schema");
    assert_eq!(
        store.ensure_table(&fits).await.expect("63 bytes fit"),
        TableStatus::Created
    );
    store.drop_tables().await.expect("drop_tables");
}

/// The `orders` table as Terraform would make it: `customer` (S) and `placed` (N), a
/// `by-status` index on (`status`, `placed`) projecting everything.
async fn create_orders(client: &Client, table: &str) {
    let placed = ("placed", ScalarAttributeType::N);
    create_raw(
        client,
        table,
        &[("customer", ScalarAttributeType::S), placed.clone()],
        Some(("by-status", &[("status", ScalarAttributeType::S), placed])),
    )
    .await;
}

fn orders() -> storekit_core::table::TableSchemaBuilder {
    TableSchema::builder("orders", KeyDef::text("customer"))
        .sort_key(KeyDef::int("placed"))
        .index(
            "by-status",
            KeyDef::text("status"),
            Some(KeyDef::int("placed")),
        )
}

#[tokio::test]
async fn a_table_made_outside_storekit_is_adopted_as_it_is() {
    on_fresh_tables("adopt", async |store| {
        let client = store.client().clone();
        let table = format!("{}orders", store.config().table_prefix());
        create_orders(&client, &table).await;
        // An item as a PynamoDB model writes it: native attributes, no storekit version.
        let lines = AttributeValue::L(vec![AttributeValue::M(HashMap::from([
            ("sku".to_owned(), AttributeValue::S("lamp".into())),
            ("qty".to_owned(), AttributeValue::N("2".into())),
        ]))]);
        put_raw(
            &client,
            &table,
            [
                ("customer", AttributeValue::S("ada".into())),
                ("placed", AttributeValue::N("1700000000".into())),
                ("status", AttributeValue::S("open".into())),
                ("total", AttributeValue::N("12.50".into())),
                ("ref", AttributeValue::S("R-1".into())),
                ("lines", lines),
                ("receipt", AttributeValue::B(Blob::new(vec![0, 1, 2]))),
            ],
        )
        .await;

        let schema = orders().build().expect("valid");
        assert_eq!(
            store.ensure_table(&schema).await.expect("ensure_table"),
            TableStatus::Unchanged,
            "no drift"
        );
        let key = RecordKey::with_sort("ada", 1_700_000_000);
        let read = store.get(&schema, &key).await.expect("get").expect("found");
        assert_eq!(read.version, 0, "an item written without a version");
        assert_eq!(
            Value::Object(read.document.clone()),
            json!({"customer": "ada", "placed": 1_700_000_000, "status": "open", "total": 12.5,
                   "ref": "R-1", "lines": [{"sku": "lamp", "qty": 2}], "receipt": "AAEC"})
        );
        let open = store
            .query(&schema, &Query::index("by-status", "open"))
            .await
            .expect("query");
        assert_eq!(open.items.len(), 1);

        let mut document = read.document.clone();
        document.insert("status".into(), json!("paid"));
        let written = store
            .replace(&schema, document, 0)
            .await
            .expect("replace at version 0");
        assert_eq!(written.version, 1);
        let raw = get_raw(
            &client,
            &table,
            [
                ("customer", AttributeValue::S("ada".into())),
                ("placed", AttributeValue::N("1700000000".into())),
            ],
        )
        .await
        .expect("stored");
        assert_eq!(raw.get("status"), Some(&AttributeValue::S("paid".into())));
        assert_eq!(raw.get("total"), Some(&AttributeValue::N("12.5".into())));
        assert_matches!(
            raw.get("lines"),
            Some(AttributeValue::L(l)) if matches!(l[0], AttributeValue::M(_))
        );
        assert_eq!(
            raw.get("_storekit_version"),
            Some(&AttributeValue::N("1".into()))
        );

        // A unique index over the existing records is built from them.
        let with_ref = orders()
            .unique("order-ref", [KeyDef::text("ref")])
            .build()
            .expect("valid");
        assert_eq!(
            store.ensure_table(&with_ref).await.expect("add the index"),
            TableStatus::IndexesAdded(vec!["order-ref".to_owned()])
        );
        let found = store
            .get_by_unique(&with_ref, "order-ref", &["R-1".into()])
            .await
            .expect("get_by_unique");
        assert_eq!(found.map(|r| r.key), Some(key.clone()));
        let taken = store
            .insert(
                &with_ref,
                doc(json!({"customer": "bob", "placed": 1, "ref": "R-1"})),
            )
            .await;
        assert_matches!(
            taken,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        );
        assert_eq!(
            store.ensure_table(&with_ref).await.expect("again"),
            TableStatus::Unchanged
        );

        // A schema that differs from the live table is refused, naming the difference.
        let drifted = TableSchema::builder("orders", KeyDef::text("customer"))
            .sort_key(KeyDef::int("placed"))
            .index(
                "by-status",
                KeyDef::text("status"),
                Some(KeyDef::text("placed_at")),
            )
            .unique("order-ref", [KeyDef::text("ref")])
            .build()
            .expect("valid");
        let refused = store.ensure_table(&drifted).await;
        assert_matches!(
            &refused,
            Err(Error::SchemaMismatch { differences, .. }) if differences.len() == 1
        );
    })
    .await;
}

#[tokio::test]
async fn bytes_keys_are_binary_attributes_and_base64_in_documents() {
    on_fresh_tables("bytes", async |store| {
        let client = store.client().clone();
        let table = format!("{}blobs", store.config().table_prefix());
        create_raw(&client, &table, &[("digest", ScalarAttributeType::B)], None).await;
        put_raw(
            &client,
            &table,
            [
                ("digest", AttributeValue::B(Blob::new(vec![0xff, 0]))),
                ("size", AttributeValue::N("3".into())),
            ],
        )
        .await;
        let schema = TableSchema::builder("blobs", KeyDef::bytes("digest"))
            .build()
            .expect("valid");
        assert_eq!(
            store.ensure_table(&schema).await.expect("ensure_table"),
            TableStatus::Unchanged
        );
        let read = store
            .get(&schema, &RecordKey::new(vec![0xff, 0]))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(read.document["digest"], json!("/wA="));
        store
            .insert(&schema, doc(json!({"digest": "AAEC", "size": 1})))
            .await
            .expect("insert");
        let raw = get_raw(
            &client,
            &table,
            [("digest", AttributeValue::B(Blob::new(vec![0, 1, 2])))],
        )
        .await
        .expect("stored as binary");
        assert_eq!(raw.get("size"), Some(&AttributeValue::N("1".into())));
    })
    .await;
}

/// An item whose float sort key no `f64` holds (`9007199254740993`, 2^53 + 1), as another
/// client or a storekit before the float-exactness rule wrote it, reads as the nearest float,
/// 2^53. Paging one record at a time then asks DynamoDB to start after 2^53, which it answers
/// with that item again: the page that would repeat it is an error, never a loop.
#[tokio::test]
async fn an_item_whose_float_key_no_f64_holds_is_read_and_never_paged_in_a_loop() {
    on_fresh_tables("inexact", async |store| {
        let client = store.client().clone();
        let schema = TableSchema::builder("stamps", KeyDef::text("p"))
            .sort_key(KeyDef::float("x"))
            .build()
            .expect("valid");
        let table = format!("{}stamps", store.config().table_prefix());
        store.ensure_table(&schema).await.expect("ensure_table");
        for x in ["9007199254740993", "9007199254740994"] {
            put_raw(
                &client,
                &table,
                [
                    ("p", AttributeValue::S("f".into())),
                    ("x", AttributeValue::N(x.into())),
                ],
            )
            .await;
        }
        let page = store
            .query(&schema, &Query::table("f").limit(1))
            .await
            .expect("the first page");
        assert_eq!(
            page.items.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
            vec![RecordKey::with_sort("f", 2f64.powi(53))]
        );
        let next = page.next.expect("one more record");
        let again = store
            .query(&schema, &Query::table("f").limit(1).after(next))
            .await;
        assert_matches!(
            &again,
            Err(Error::Backend {
                backend: "dynamodb",
                ..
            })
        );
        // A record with an exact key is found and written as ever.
        let exact = RecordKey::with_sort("f", 2f64.powi(53) + 2.0);
        assert!(store.get(&schema, &exact).await.expect("get").is_some());
        let refused = store
            .insert(
                &schema,
                doc(json!({"p": "f", "x": 9_007_199_254_740_995_i64})),
            )
            .await;
        assert_matches!(
            refused,
            Err(Error::InvalidInput {
                what: "document",
                ..
            })
        );
    })
    .await;
}

#[tokio::test]
async fn conditional_writes_send_one_request_each() {
    on_fresh_tables("cond", async |store| {
        let spans = Spans::global();
        let schema = TableSchema::builder("conditional", KeyDef::text("sku"))
            .build()
            .expect("valid schema");
        store.ensure_table(&schema).await.expect("ensure_table");
        let count = |op: &str| spans.take(op, "conditional");
        let key = RecordKey::from("lamp");
        let lamp = |stock: i64| doc(json!({"sku": "lamp", "stock": stock}));
        // Create-only: one PutItem, allowed or refused.
        let new = Condition::not_exists("sku");
        store.put_if(&schema, lamp(2), &new).await.expect("put_if");
        store
            .put_if(&schema, lamp(3), &new)
            .await
            .expect_err("taken");
        assert_eq!(count("put_if"), [1, 1], "a create-only put: one PutItem");
        // A conditional delete: one DeleteItem, refused or done.
        let sold_out = Condition::eq("stock", 0);
        let refused = store.delete_if(&schema, &key, &sold_out).await;
        assert_matches!(
            refused,
            Err(Error::Conflict {
                what: "condition",
                ..
            })
        );
        let deleted = store
            .delete_if(&schema, &key, &Condition::eq("stock", 2))
            .await
            .expect("delete_if");
        assert!(deleted);
        assert_eq!(
            count("delete_if"),
            [1, 1],
            "a conditional delete: one DeleteItem"
        );

        // An order and its stock decrement: one TransactWriteItems, committed or refused.
        let orders = TableSchema::builder("conditional_orders", KeyDef::text("id"))
            .build()
            .expect("valid schema");
        store.ensure_table(&orders).await.expect("ensure_table");
        store.put(&schema, lamp(1)).await.expect("put");
        let buy = |id: &str| {
            Transaction::new()
                .put_if(
                    &orders,
                    doc(json!({"id": id, "sku": "lamp"})),
                    Condition::not_exists("id"),
                )
                .patch_if(
                    &schema,
                    "lamp",
                    Patch::new().add("stock", -1),
                    Condition::ge("stock", 1),
                )
        };
        store.transact(&buy("o-1")).await.expect("transact");
        let refused = store.transact(&buy("o-2")).await;
        assert_matches!(refused, Err(Error::TransactionFailed { index: 1, .. }));
        assert_eq!(
            spans.take("transact", "conditional_orders"),
            [1, 1],
            "a transaction: one TransactWriteItems"
        );
    })
    .await;
}

/// The catalogue's table as its Terraform makes it: `id` (S), and a `product-name-index` on
/// `name` (here projecting everything: partial projections are another part of issue 23).
async fn create_products(client: &Client, table: &str) {
    let name = ("name", ScalarAttributeType::S);
    create_raw(
        client,
        table,
        &[("id", ScalarAttributeType::S)],
        Some(("product-name-index", &[name])),
    )
    .await;
}

/// A table made outside storekit, under a name that is not `{prefix}{name}`, is opened by
/// its own name (`exact_name`) from a store whose prefix is something else: it reads what the
/// raw SDK wrote, writes what the raw SDK reads back, is named exactly in the exports, and a
/// store's `drop_tables` leaves it (the store did not make it).
#[tokio::test]
async fn a_table_made_by_terraform_is_opened_by_its_exact_name() {
    let Some(store) = store("exact").await else {
        return;
    };
    let client = store.client().clone();
    let table = format!("product-table-{}", suffix());
    assert!(!table.starts_with(store.config().table_prefix()));
    create_products(&client, &table).await;
    let run = async {
        put_raw(
            &client,
            &table,
            [
                ("id", AttributeValue::S("p-1".into())),
                ("name", AttributeValue::S("Lamp".into())),
                ("price", AttributeValue::N("12.5".into())),
            ],
        )
        .await;

        let schema = TableSchema::builder(&table, KeyDef::text("id"))
            .index("product-name-index", KeyDef::text("name"), None)
            .exact_name()
            .build()
            .expect("valid schema");
        assert_eq!(
            store.ensure_table(&schema).await.expect("ensure_table"),
            TableStatus::Unchanged,
            "adopted as it is, no drift"
        );
        let read = store
            .get(&schema, &"p-1".into())
            .await
            .expect("get")
            .expect("written by the raw SDK");
        assert_eq!(
            Value::Object(read.document),
            json!({"id": "p-1", "name": "Lamp", "price": 12.5})
        );
        store
            .insert(
                &schema,
                doc(json!({"id": "p-2", "name": "Desk", "price": 80})),
            )
            .await
            .expect("insert");
        let raw = get_raw(&client, &table, [("id", AttributeValue::S("p-2".into()))])
            .await
            .expect("written by storekit, in the exact table");
        assert_eq!(raw.get("name"), Some(&AttributeValue::S("Desk".into())));
        assert_eq!(raw.get("price"), Some(&AttributeValue::N("80".into())));
        // Nothing was made under the store's prefix for it.
        let prefixed = client
            .describe_table()
            .table_name(format!("{}{table}", store.config().table_prefix()))
            .send()
            .await;
        assert!(prefixed.is_err(), "{prefixed:?}");
        let desks = store
            .query(&schema, &Query::index("product-name-index", "Desk"))
            .await
            .expect("query");
        assert!(desks.items.len() <= 1, "an index read may lag, never more");

        // The exports name the exact table, whatever the prefix.
        let options = storekit_core::admin::ExportOptions::default().prefix("shop_");
        let terraform =
            storekit_dynamodb::export::terraform(&options, &[&schema]).expect("terraform");
        assert!(terraform.contains(&format!("\"{table}\"")), "{terraform}");
        assert!(!terraform.contains(&format!("shop_{table}")), "{terraform}");
        let cloudformation = storekit_dynamodb::export::cloudformation(&options, &[&schema])
            .expect("cloudformation");
        assert!(
            cloudformation.contains(&format!("\"{table}\"")),
            "{cloudformation}"
        );
        assert!(!cloudformation.contains(&format!("shop_{table}")));

        // A store's teardown leaves a table it adopted and did not make.
        store.drop_tables().await.expect("drop_tables");
        let raw = get_raw(&client, &table, [("id", AttributeValue::S("p-1".into()))]).await;
        assert!(raw.is_some(), "the table is still there");
    };
    run.await;
    store.drop_tables().await.expect("drop_tables");
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete the test's table");
}
