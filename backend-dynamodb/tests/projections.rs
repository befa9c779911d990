//! Projected reads on DynamoDB Local send a `ProjectionExpression`: the requests are read
//! with an SDK interceptor, counted, and sent again through a plain client to see that
//! DynamoDB itself leaves out what was not selected.
//!
//! Without `STOREKIT_DYNAMODB_ENDPOINT` the tests say loudly that they skipped; with `CI` set
//! they fail.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region};
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use serde_json::{Value, json};
use storekit_core::table::{
    Condition, Document, KeyDef, Projection, Query, RecordKey, TableSchema, TableStore,
};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};

/// One read request as sent: its operation, `ProjectionExpression` and attribute names.
#[derive(Debug, Clone)]
struct Sent {
    operation: &'static str,
    projection: Option<String>,
    filter: Option<String>,
    names: HashMap<String, String>,
}

/// Records every GetItem, BatchGetItem and Query before it is sent.
#[derive(Debug, Clone, Default)]
struct Reads(Arc<Mutex<Vec<Sent>>>);

impl Reads {
    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Intercept for Reads {
    fn name(&self) -> &'static str {
        "storekit-test-read-recorder"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let names = |names: Option<&HashMap<String, String>>| names.cloned().unwrap_or_default();
        let sent = if let Some(get) = input.downcast_ref::<GetItemInput>() {
            Sent {
                operation: "GetItem",
                projection: get.projection_expression().map(str::to_owned),
                filter: None,
                names: names(get.expression_attribute_names()),
            }
        } else if let Some(batch) = input.downcast_ref::<BatchGetItemInput>() {
            let request = batch
                .request_items()
                .and_then(|tables| tables.values().next());
            Sent {
                operation: "BatchGetItem",
                projection: request
                    .and_then(|r| r.projection_expression())
                    .map(str::to_owned),
                filter: None,
                names: names(request.and_then(|r| r.expression_attribute_names())),
            }
        } else if let Some(query) = input.downcast_ref::<QueryInput>() {
            Sent {
                operation: "Query",
                projection: query.projection_expression().map(str::to_owned),
                filter: query.filter_expression().map(str::to_owned),
                names: names(query.expression_attribute_names()),
            }
        } else {
            return Ok(());
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(sent);
        Ok(())
    }
}

fn client(endpoint: &str, reads: Option<Reads>) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("storekit", "storekit", None, None, "test"));
    if let Some(reads) = reads {
        config = config.interceptor(reads);
    }
    Client::from_conf(config.build())
}

fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The attribute names a request names, sorted.
fn named(sent: &Sent) -> Vec<&str> {
    let mut names: Vec<&str> = sent.names.values().map(String::as_str).collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn projected_reads_send_a_projection_expression() {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("randomness");
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let config = DynamoDbConfig::builder()
        .table_prefix(format!("proj{suffix}_"))
        .build()
        .expect("config");
    let reads = Reads::default();
    let store = DynamoDbStore::from_client(client(&endpoint, Some(reads.clone())), &config);
    let schema = TableSchema::builder("orders", KeyDef::text("id"))
        .index("by-status", KeyDef::text("status"), Some(KeyDef::int("at")))
        .build()
        .expect("valid schema");
    let run = async {
        store.ensure_table(&schema).await.expect("ensure_table");
        let blob = "x".repeat(10_000);
        for n in 0..5 {
            let order = json!({"id": format!("o{n}"), "status": "open", "at": n, "big": n % 2 == 0,
                               "blob": blob, "lines": [{"sku": "a"}, {"sku": format!("b{n}")}]});
            store.put(&schema, doc(order)).await.expect("put");
        }
        reads.take();

        // A projected get: one GetItem naming the selection, the key and the version, and
        // nothing else.
        let select = Projection::new(["lines[1].sku"]);
        let key = RecordKey::new("o1");
        let got = store
            .get_selected(&schema, &key, &select)
            .await
            .expect("get_selected")
            .expect("found");
        assert_eq!(
            Value::Object(got.document.clone()),
            json!({"id": "o1", "lines": [{"sku": "b1"}]})
        );
        assert_eq!(got.version, 1);
        let sent = reads.take();
        assert_eq!(sent.len(), 1, "one request: {sent:?}");
        assert_eq!(sent[0].operation, "GetItem");
        assert_eq!(named(&sent[0]), ["_storekit_version", "id", "lines", "sku"]);
        let expression = sent[0].projection.clone().expect("a ProjectionExpression");
        // DynamoDB itself leaves out what was not selected: the same request, sent raw.
        let raw = client(&endpoint, None)
            .get_item()
            .table_name(format!("proj{suffix}_orders"))
            .key("id", AttributeValue::S("o1".into()))
            .projection_expression(&expression)
            .set_expression_attribute_names(Some(sent[0].names.clone()))
            .send()
            .await
            .expect("raw GetItem")
            .item
            .expect("found");
        let mut attributes: Vec<&str> = raw.keys().map(String::as_str).collect();
        attributes.sort_unstable();
        assert_eq!(attributes, ["_storekit_version", "id", "lines"]);

        // A projected get_many: one BatchGetItem with the projection.
        let keys = [RecordKey::new("o0"), RecordKey::new("nope")];
        let found = store
            .get_many_selected(&schema, &keys, &Projection::new(["status"]))
            .await
            .expect("get_many_selected");
        assert_eq!(
            found[0].as_ref().map(|r| Value::Object(r.document.clone())),
            Some(json!({"id": "o0", "status": "open"}))
        );
        assert!(found[1].is_none());
        let sent = reads.take();
        assert_eq!(sent.len(), 1, "one request: {sent:?}");
        assert_eq!(sent[0].operation, "BatchGetItem");
        assert!(sent[0].projection.is_some());
        assert_eq!(named(&sent[0]), ["_storekit_version", "id", "status"]);

        // A filtered, projected index query: one Query with both expressions, fetching the
        // index keys for the cursor; the filter's field is tested but not returned.
        let query = Query::index("by-status", "open")
            .filter(Condition::eq("big", true))
            .select(["lines[0]"])
            .limit(2);
        // The index is eventual: wait until it holds every order.
        let all = Query::index("by-status", "open").limit(10);
        while store.query(&schema, &all).await.expect("query").items.len() < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        reads.take();
        let mut pages = Vec::new();
        let mut next = Some(query.clone());
        while let Some(q) = next {
            let page = store.query(&schema, &q).await.expect("query");
            next = page.next.clone().map(|c| query.clone().after(c));
            pages.push(page);
        }
        let ids: Vec<Value> = pages
            .iter()
            .flat_map(|page| page.items.iter())
            .map(|r| Value::Object(r.document.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                json!({"id": "o0", "lines": [{"sku": "a"}]}),
                json!({"id": "o2", "lines": [{"sku": "a"}]}),
                json!({"id": "o4", "lines": [{"sku": "a"}]}),
            ]
        );
        let sent = reads.take();
        assert!(sent.iter().all(|s| s.operation == "Query"), "{sent:?}");
        for request in &sent {
            assert!(request.projection.is_some(), "{request:?}");
            assert!(request.filter.is_some(), "{request:?}");
            assert_eq!(
                named(request),
                ["_storekit_version", "at", "big", "id", "lines", "status"]
            );
        }
        assert!(sent.len() >= pages.len(), "{sent:?}");
    };
    run.await;
    store.drop_tables().await.expect("drop_tables");
}
