//! The catalogue's own table, adopted as it is (issue 23, "Done when"): made with the raw SDK
//! exactly as the catalogue's Terraform declares it (`product-table`, hash key `id`, the GSI
//! `product-name-index` projecting `INCLUDE`, provisioned at 20/20 with the index at 10/10,
//! TTL left disabled), filled as its PynamoDB repository fills it, then opened by storekit by
//! its exact name with no drift: queried through its partial index, written so that a raw
//! `GetItem` reads storekit's records back, another team's GSI left alone, and a new declared
//! index added with its throughput.

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, Projection, ProjectionType, ProvisionedThroughput,
    ScalarAttributeType,
};
use serde::Deserialize;
use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::admin::ExportOptions;
use storekit_core::table::{
    Billing, IndexProjection, KeyDef, Query, QueryIndex, QueryPage, Record, RecordKey, Table,
    TableSchema, TableStatus, TableStore, Throughput,
};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};

use raw::{attribute, delete_raw, get_raw, key_schema, put_raw, s, suffix, wait_active};

/// The catalogue's table name: the one its Terraform gives, opened exactly.
const TABLE: &str = "product-table";
const INDEX: &str = "product-name-index";

async fn store() -> Option<DynamoDbStore> {
    let endpoint = common::endpoint()?;
    let config = DynamoDbConfig::builder()
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials("storekit", "storekit")
        .table_prefix(format!("catalogue{}_", suffix()))
        .build()
        .expect("config");
    Some(DynamoDbStore::connect(&config).await.expect("connect"))
}

fn units(read: i64, write: i64) -> ProvisionedThroughput {
    ProvisionedThroughput::builder()
        .read_capacity_units(read)
        .write_capacity_units(write)
        .build()
        .expect("throughput")
}

/// The table as the catalogue's Terraform declares it:
///
/// ```hcl
/// resource "aws_dynamodb_table" "product_table" {
///   name           = "product-table"
///   billing_mode   = "PROVISIONED"
///   read_capacity  = 20
///   write_capacity = 20
///   hash_key       = "id"
///   attribute { name = "id"   type = "S" }
///   attribute { name = "name" type = "S" }
///   global_secondary_index {
///     name               = "product-name-index"
///     hash_key           = "name"
///     projection_type    = "INCLUDE"
///     non_key_attributes = ["price", "updated_at"]
///     read_capacity      = 10
///     write_capacity     = 10
///   }
///   ttl { attribute_name = "" enabled = false }
/// }
/// ```
async fn create_as_terraform_does(client: &Client) {
    let index = GlobalSecondaryIndex::builder()
        .index_name(INDEX)
        .set_key_schema(Some(key_schema(&["name"])))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes("price")
                .non_key_attributes("updated_at")
                .build(),
        )
        .provisioned_throughput(units(10, 10))
        .build()
        .expect("index");
    client
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(attribute("id", ScalarAttributeType::S))
        .attribute_definitions(attribute("name", ScalarAttributeType::S))
        .set_key_schema(Some(key_schema(&["id"])))
        .provisioned_throughput(units(20, 20))
        .global_secondary_indexes(index)
        .send()
        .await
        .expect("create product-table");
    // A disabled TTL block sends nothing: the table's TTL stays off.
}

/// One product as the catalogue's PynamoDB model writes it: `id`, `name`, `price` and
/// `updated_at` numbers (`time.time()`), an optional `description`, a `MapAttribute` of
/// dimensions, a `ListAttribute` of image names and a `BooleanAttribute`.
async fn put_as_pynamodb_does(client: &Client, n: usize) {
    let name = ["Lamp", "Desk", "Chair"][n % 3];
    let mut item = vec![
        ("id", s(&format!("p-{n:02}"))),
        ("name", s(name)),
        ("price", AttributeValue::N(format!("{}.5", 10 + n))),
        (
            "updated_at",
            AttributeValue::N(format!("{}.25", 1_700_000_000 + n)),
        ),
        ("in_stock", AttributeValue::Bool(n.is_multiple_of(2))),
        (
            "dimensions",
            AttributeValue::M(
                [("w".to_owned(), AttributeValue::N(n.to_string()))]
                    .into_iter()
                    .collect(),
            ),
        ),
        (
            "images",
            AttributeValue::L(vec![AttributeValue::S(format!("{n}.png"))]),
        ),
    ];
    if !n.is_multiple_of(4) {
        item.push(("description", s(&format!("a fine {name}"))));
    }
    put_raw(client, TABLE, item).await;
}

/// The schema that declares the table as Terraform made it.
fn catalogue(index_throughput: Throughput) -> TableSchema {
    TableSchema::builder(TABLE, KeyDef::text("id"))
        .query_index(
            QueryIndex::new(INDEX, KeyDef::text("name"), None)
                .include(["price", "updated_at"])
                .throughput(index_throughput),
        )
        .billing(Billing::Provisioned(Throughput::new(20, 20)))
        .exact_name()
        .build()
        .expect("valid schema")
}

/// An index query, waited for: DynamoDB's GSIs are eventual.
async fn settled(
    store: &DynamoDbStore,
    schema: &TableSchema,
    query: &Query,
    n: usize,
) -> QueryPage {
    for _ in 0..100 {
        let page = store.query(schema, query).await.expect("query");
        if page.items.len() == n {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.query(schema, query).await.expect("query")
}

#[derive(Debug, Deserialize, PartialEq)]
struct Listing {
    id: String,
    name: String,
    price: f64,
    updated_at: f64,
}

fn mismatch(result: storekit_core::Result<TableStatus>) -> Vec<String> {
    match result {
        Err(Error::SchemaMismatch { differences, .. }) => differences,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn the_catalogue_s_terraform_table_is_adopted_as_it_is() {
    let Some(store) = store().await else {
        return;
    };
    let client = store.client().clone();
    delete_raw(&client, TABLE).await;
    create_as_terraform_does(&client).await;
    wait_active(&client, TABLE).await;
    for n in 0..30 {
        put_as_pynamodb_does(&client, n).await;
    }
    let run = async {
        store.migrate().await.expect("migrate");
        let schema = catalogue(Throughput::new(10, 10));

        // No drift: keys, the INCLUDE projection, billing and throughputs, TTL off.
        assert_eq!(
            store.ensure_table(&schema).await.expect("ensure_table"),
            TableStatus::Unchanged
        );
        assert_eq!(
            store.schema_differences().await.expect("check"),
            [],
            "the store's own tables and the adopted one are as expected"
        );

        // The partial index answers with what it holds, typed as asked.
        let lamps = Query::index(INDEX, "Lamp");
        let page = settled(&store, &schema, &lamps, 10).await;
        assert_eq!(page.items.len(), 10);
        let first = &page.items[0];
        let id = first.document["id"].as_str().expect("an id").to_owned();
        let n: usize = id[2..].parse().expect("a number");
        assert_eq!(
            Value::Object(first.document.clone()),
            json!({"id": id, "name": "Lamp", "price": 10.5 + n as f64,
                   "updated_at": 1_700_000_000.25 + n as f64})
        );
        assert_eq!(first.version, 0, "the index holds no version");
        let table: Table<Value> = Table::new(std::sync::Arc::new(store.clone()), schema.clone());
        let listed = table
            .query_as::<Listing>(lamps.clone().limit(3))
            .await
            .expect("query_as");
        assert!(listed.items.iter().all(|l| l.record.name == "Lamp"));
        assert!(listed.next.is_some());

        // Whole records when asked: read from the table by key, with every attribute.
        let whole = settled(&store, &schema, &lamps.clone().whole_records(), 10).await;
        let record: &Record = whole
            .items
            .iter()
            .find(|r| r.key == RecordKey::new(id.as_str()))
            .expect("the same lamp");
        assert_eq!(record.document["dimensions"], json!({"w": n}));
        assert_eq!(record.document["images"], json!([format!("{n}.png")]));
        assert_eq!(record.document["in_stock"], json!(n.is_multiple_of(2)));

        // storekit's writes are the repository's items: a raw GetItem reads them back.
        let written = store
            .put(
                &schema,
                json!({"id": "p-99", "name": "Lamp", "price": 99.5, "updated_at": 1.8e9,
                       "description": "from storekit"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            )
            .await
            .expect("put");
        assert_eq!(written.version, 1);
        let raw = get_raw(&client, TABLE, [("id", s("p-99"))])
            .await
            .expect("written");
        assert_eq!(raw.get("name"), Some(&AttributeValue::S("Lamp".into())));
        assert_eq!(raw.get("price"), Some(&AttributeValue::N("99.5".into())));
        assert_eq!(
            raw.get("description"),
            Some(&AttributeValue::S("from storekit".into()))
        );
        // An item the repository wrote is at version 0; replacing it there is storekit's write.
        let mut old = store
            .get(&schema, &RecordKey::new("p-01"))
            .await
            .expect("get")
            .expect("the repository's item");
        assert_eq!(old.version, 0);
        old.document.insert("price".into(), json!(5));
        store
            .replace(&schema, old.document, 0)
            .await
            .expect("replace at 0");
        let raw = get_raw(&client, TABLE, [("id", s("p-01"))])
            .await
            .expect("still there");
        assert_eq!(raw.get("price"), Some(&AttributeValue::N("5".into())));
        assert_eq!(
            raw.get("images"),
            Some(&AttributeValue::L(vec![AttributeValue::S("1.png".into())]))
        );

        // Declared otherwise, the same table is drift, every difference listed.
        let on_demand = TableSchema::builder(TABLE, KeyDef::text("id"))
            .query_index(QueryIndex::new(INDEX, KeyDef::text("name"), None).keys_only())
            .exact_name()
            .build()
            .expect("valid schema");
        assert_eq!(
            mismatch(store.ensure_table(&on_demand).await),
            [
                "billed provisioned at 20 read, 20 write units, declared on demand",
                "index \"product-name-index\" projects INCLUDE(price, updated_at), declared KEYS_ONLY",
            ]
        );
        assert_eq!(
            mismatch(store.ensure_table(&catalogue(Throughput::new(5, 5))).await),
            [
                "index \"product-name-index\" is provisioned at 10 read, 10 write units, declared \
              5 read, 5 write units"
            ]
        );

        // The exports render the table as Terraform declared it.
        let options = ExportOptions::default().tables_only();
        let terraform = storekit_dynamodb::export::terraform(&options, &[&schema]).expect("tf");
        for line in [
            "name         = \"product-table\"",
            "billing_mode = \"PROVISIONED\"",
            "read_capacity  = 20",
            "projection_type = \"INCLUDE\"",
            "non_key_attributes = [\"price\", \"updated_at\"]",
            "read_capacity   = 10",
        ] {
            assert!(terraform.contains(line), "{line} in\n{terraform}");
        }
        let template =
            storekit_dynamodb::export::cloudformation(&options, &[&schema]).expect("cfn");
        let template: Value = serde_json::from_str(&template).expect("json");
        let table = &template["Resources"]["ProductTable"]["Properties"];
        assert_eq!(table["BillingMode"], "PROVISIONED");
        assert_eq!(
            table["ProvisionedThroughput"],
            json!({"ReadCapacityUnits": 20, "WriteCapacityUnits": 20})
        );
        assert_eq!(
            table["GlobalSecondaryIndexes"][0]["Projection"],
            json!({"ProjectionType": "INCLUDE", "NonKeyAttributes": ["price", "updated_at"]})
        );

        // Another team's GSI: left alone and listed, never a mismatch.
        client
            .update_table()
            .table_name(TABLE)
            .attribute_definitions(attribute("in_stock_s", ScalarAttributeType::S))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder()
                    .create(
                        CreateGlobalSecondaryIndexAction::builder()
                            .index_name("stock-index")
                            .set_key_schema(Some(key_schema(&["in_stock_s"])))
                            .projection(
                                Projection::builder()
                                    .projection_type(ProjectionType::KeysOnly)
                                    .build(),
                            )
                            .provisioned_throughput(units(5, 5))
                            .build()
                            .expect("index"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("another team's index");
        wait_active(&client, TABLE).await;
        let undeclared = TableStatus::UndeclaredIndexes {
            added: Vec::new(),
            undeclared: vec!["stock-index".to_owned()],
        };
        assert_eq!(
            store.ensure_table(&schema).await.expect("ensure"),
            undeclared
        );

        // A declared index the table lacks is added with the table's throughput (DynamoDB
        // requires one on a provisioned table) and filled from the records.
        let grown = TableSchema::builder(TABLE, KeyDef::text("id"))
            .query_index(
                QueryIndex::new(INDEX, KeyDef::text("name"), None)
                    .include(["price", "updated_at"])
                    .throughput(Throughput::new(10, 10)),
            )
            .query_index(
                QueryIndex::new(
                    "product-description-index",
                    KeyDef::text("description"),
                    None,
                )
                .projected(IndexProjection::KeysOnly),
            )
            .billing(Billing::Provisioned(Throughput::new(20, 20)))
            .exact_name()
            .build()
            .expect("valid schema");
        assert_eq!(
            store.ensure_table(&grown).await.expect("ensure"),
            TableStatus::UndeclaredIndexes {
                added: vec!["product-description-index".to_owned()],
                undeclared: vec!["stock-index".to_owned()],
            }
        );
        let described = client
            .describe_table()
            .table_name(TABLE)
            .send()
            .await
            .expect("describe")
            .table
            .expect("a table");
        let added = described
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some("product-description-index"))
            .expect("the new index");
        let throughput = added.provisioned_throughput().expect("provisioned");
        assert_eq!(
            (
                throughput.read_capacity_units(),
                throughput.write_capacity_units()
            ),
            (Some(20), Some(20))
        );
        let fine = Query::index("product-description-index", "a fine Desk");
        let desks = settled(&store, &grown, &fine, 7).await;
        assert_eq!(desks.items.len(), 7, "backfilled: {:?}", desks.items);
        assert_eq!(
            store.ensure_table(&grown).await.expect("ensure"),
            undeclared,
            "and no drift after"
        );
        // Recorded in the catalog now (an index was added): `schema check` compares it, billing
        // and projections included, and lists the other team's index apart.
        assert_eq!(store.schema_differences().await.expect("check"), []);
        let listed: Vec<String> = store
            .undeclared_indexes()
            .await
            .expect("undeclared")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            listed,
            ["table \"product-table\": index \"stock-index\" is not declared: left alone"]
        );
    };
    // Cleaned up whatever happened: the exact-named table and the store's own.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    delete_raw(&client, TABLE).await;
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
