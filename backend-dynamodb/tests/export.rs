//! The Terraform and CloudFormation exports, applied to DynamoDB Local (the endpoint in
//! `STOREKIT_DYNAMODB_ENDPOINT`) by a tiny applier of each format: the tables they make are
//! the store's own, so `migrate` finds everything present, `schema_differences` finds
//! nothing, a declared table is adopted by `ensure_table` without drift, and conformance
//! cases pass on them.
//!
//! Without the variable the server tests say loudly that they skipped; with `CI` set they
//! fail.

mod common;
#[path = "common/suite.rs"]
mod suite;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ProvisionedThroughput, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use hcl::{Body, Expression};
use serde_json::{Value, json};
use storekit_conformance::SetupContext;
use storekit_core::IdKind;
use storekit_core::admin::ExportOptions;
use storekit_core::table::{
    Billing, KeyDef, QueryIndex, TableSchema, TableStatus as Ensured, TableStore, Throughput,
};
use storekit_dynamodb::export;

#[derive(Debug, Clone, Copy)]
enum Format {
    CloudFormation,
    Terraform,
}

/// The tables of an export as CloudFormation resources' properties, whatever the format.
fn rendered_tables(format: Format, options: &ExportOptions, tables: &[&TableSchema]) -> Vec<Value> {
    match format {
        Format::CloudFormation => {
            let text = export::cloudformation(options, tables).expect("cloudformation");
            let template: Value = serde_json::from_str(&text).expect("the template is JSON");
            template["Resources"]
                .as_object()
                .expect("resources")
                .values()
                .map(|resource| {
                    assert_eq!(resource["Type"], "AWS::DynamoDB::Table");
                    resource["Properties"].clone()
                })
                .collect()
        }
        Format::Terraform => {
            let text = export::terraform(options, tables).expect("terraform");
            let body: Body = hcl::parse(&text).expect("the Terraform parses");
            body.blocks()
                .filter(|b| b.identifier() == "resource")
                .map(|block| {
                    assert_eq!(block.labels()[0].as_str(), "aws_dynamodb_table");
                    terraform_table(block.body())
                })
                .collect()
        }
    }
}

fn text(body: &Body, key: &str) -> Option<String> {
    body.attributes()
        .find(|a| a.key() == key)
        .map(|a| match a.expr() {
            Expression::String(text) => text.clone(),
            other => panic!("{key} is {other:?}, not a string"),
        })
}

fn number(body: &Body, key: &str) -> Option<i64> {
    body.attributes()
        .find(|a| a.key() == key)
        .map(|a| match a.expr() {
            Expression::Number(n) => n.as_i64().expect("an integer"),
            other => panic!("{key} is {other:?}, not a number"),
        })
}

fn texts(body: &Body, key: &str) -> Option<Vec<String>> {
    body.attributes()
        .find(|a| a.key() == key)
        .map(|a| match a.expr() {
            Expression::Array(items) => items
                .iter()
                .map(|item| match item {
                    Expression::String(text) => text.clone(),
                    other => panic!("{key} holds {other:?}, not a string"),
                })
                .collect(),
            other => panic!("{key} is {other:?}, not a list"),
        })
}

/// A resource's `read_capacity` and `write_capacity` as CloudFormation's
/// `ProvisionedThroughput`, if it has them.
fn throughput(body: &Body) -> Option<Value> {
    Some(json!({
        "ReadCapacityUnits": number(body, "read_capacity")?,
        "WriteCapacityUnits": number(body, "write_capacity")?,
    }))
}

fn keys(body: &Body) -> Value {
    let mut keys = vec![json!({"AttributeName": text(body, "hash_key"), "KeyType": "HASH"})];
    if let Some(range) = text(body, "range_key") {
        keys.push(json!({"AttributeName": range, "KeyType": "RANGE"}));
    }
    Value::Array(keys)
}

/// An `aws_dynamodb_table` resource as the CloudFormation properties it stands for.
fn terraform_table(body: &Body) -> Value {
    let blocks = |name: &'static str| body.blocks().filter(move |b| b.identifier() == name);
    let mut properties = json!({
        "TableName": text(body, "name"),
        "BillingMode": text(body, "billing_mode"),
        "KeySchema": keys(body),
        "AttributeDefinitions": blocks("attribute")
            .map(|b| json!({"AttributeName": text(b.body(), "name"), "AttributeType": text(b.body(), "type")}))
            .collect::<Vec<_>>(),
    });
    let indexes: Vec<Value> = blocks("global_secondary_index")
        .map(|b| {
            let mut index = json!({
                "IndexName": text(b.body(), "name"),
                "KeySchema": keys(b.body()),
                "Projection": {"ProjectionType": text(b.body(), "projection_type")},
            });
            if let Some(included) = texts(b.body(), "non_key_attributes") {
                index["Projection"]["NonKeyAttributes"] = json!(included);
            }
            if let Some(throughput) = throughput(b.body()) {
                index["ProvisionedThroughput"] = throughput;
            }
            index
        })
        .collect();
    if !indexes.is_empty() {
        properties["GlobalSecondaryIndexes"] = Value::Array(indexes);
    }
    if let Some(throughput) = throughput(body) {
        properties["ProvisionedThroughput"] = throughput;
    }
    if let Some(ttl) = blocks("ttl").next() {
        let enabled = ttl
            .body()
            .attributes()
            .any(|a| a.key() == "enabled" && matches!(a.expr(), Expression::Bool(true)));
        properties["TimeToLiveSpecification"] =
            json!({"AttributeName": text(ttl.body(), "attribute_name"), "Enabled": enabled});
    }
    properties
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

fn key_schema(keys: &Value) -> Vec<KeySchemaElement> {
    keys.as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(str_of(k, "AttributeName"))
                .key_type(KeyType::from(str_of(k, "KeyType")))
                .build()
                .expect("key")
        })
        .collect()
}

/// CloudFormation's `ProvisionedThroughput`, if `throughput` is one.
fn provisioned(throughput: &Value) -> Option<ProvisionedThroughput> {
    let units = |key: &str| throughput[key].as_i64();
    Some(
        ProvisionedThroughput::builder()
            .read_capacity_units(units("ReadCapacityUnits")?)
            .write_capacity_units(units("WriteCapacityUnits")?)
            .build()
            .expect("throughput"),
    )
}

/// What CloudFormation does with one table's properties: CreateTable, then UpdateTimeToLive
/// once it is active.
async fn apply(client: &Client, properties: &Value) {
    let name = str_of(properties, "TableName");
    let attributes = properties["AttributeDefinitions"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(str_of(a, "AttributeName"))
                .attribute_type(ScalarAttributeType::from(str_of(a, "AttributeType")))
                .build()
                .expect("attribute")
        })
        .collect();
    let indexes: Option<Vec<GlobalSecondaryIndex>> = properties["GlobalSecondaryIndexes"]
        .as_array()
        .map(|indexes| {
            indexes
                .iter()
                .map(|i| {
                    GlobalSecondaryIndex::builder()
                        .index_name(str_of(i, "IndexName"))
                        .set_key_schema(Some(key_schema(&i["KeySchema"])))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(str_of(
                                    &i["Projection"],
                                    "ProjectionType",
                                )))
                                .set_non_key_attributes(
                                    i["Projection"]["NonKeyAttributes"].as_array().map(|names| {
                                        names
                                            .iter()
                                            .map(|n| n.as_str().expect("name").to_owned())
                                            .collect()
                                    }),
                                )
                                .build(),
                        )
                        .set_provisioned_throughput(provisioned(&i["ProvisionedThroughput"]))
                        .build()
                        .expect("index")
                })
                .collect()
        });
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(str_of(properties, "BillingMode")))
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&properties["KeySchema"])))
        .set_global_secondary_indexes(indexes)
        .set_provisioned_throughput(provisioned(&properties["ProvisionedThroughput"]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    loop {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .expect("describe");
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if let Some(ttl) = properties.get("TimeToLiveSpecification") {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(str_of(ttl, "AttributeName"))
                    .enabled(ttl["Enabled"] == json!(true))
                    .build()
                    .expect("ttl"),
            )
            .send()
            .await
            .expect("ttl");
    }
}

async fn apply_all(client: &Client, tables: &[Value]) {
    for table in tables {
        apply(client, table).await;
    }
}

/// A declared table with everything adoption must get right without a catalog: a sort key,
/// indexes on float and int sort keys, and a unique index.
fn events() -> TableSchema {
    TableSchema::builder("events", KeyDef::text("stream"))
        .sort_key(KeyDef::int("seq"))
        .index("by_time", KeyDef::text("kind"), Some(KeyDef::float("at")))
        .index("by_count", KeyDef::text("kind"), Some(KeyDef::int("count")))
        .unique("by_ref", [KeyDef::text("ref")])
        .build()
        .expect("schema")
}

/// The products table of the seed data: a text id, and `product-name-index` on name and
/// `updated_at`.
fn products() -> TableSchema {
    TableSchema::builder("products", KeyDef::text("id"))
        .index(
            "product-name-index",
            KeyDef::text("name"),
            Some(KeyDef::float("updated_at")),
        )
        .build()
        .expect("schema")
}

#[test]
fn products_render_with_their_keys_and_index_in_both_formats() {
    let schema = products();
    let options = ExportOptions::default().prefix("shop_").tables_only();
    for format in [Format::CloudFormation, Format::Terraform] {
        let tables = rendered_tables(format, &options, &[&schema]);
        let names: Vec<&str> = tables.iter().map(|t| str_of(t, "TableName")).collect();
        assert_eq!(
            names.len(),
            2,
            "{format:?}: only the marker table and products: {names:?}"
        );
        assert!(names.contains(&"shop_storekit_unique"), "{format:?}");
        let table = tables
            .iter()
            .find(|t| t["TableName"] == "shop_products")
            .expect("products");
        assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            table["KeySchema"],
            json!([{"AttributeName": "id", "KeyType": "HASH"}])
        );
        let mut attributes = table["AttributeDefinitions"]
            .as_array()
            .expect("attributes")
            .clone();
        attributes.sort_by_key(|a| a["AttributeName"].to_string());
        assert_eq!(
            Value::Array(attributes),
            json!([
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "name", "AttributeType": "S"},
                {"AttributeName": "updated_at", "AttributeType": "N"},
            ]),
            "{format:?}"
        );
        assert_eq!(
            table["GlobalSecondaryIndexes"],
            json!([{
                "IndexName": "product-name-index",
                "KeySchema": [
                    {"AttributeName": "name", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }]),
            "{format:?}"
        );
        assert!(table.get("TimeToLiveSpecification").is_none());
    }
}

#[test]
fn the_store_s_own_tables_render_with_ttl_on_the_kv_table() {
    for format in [Format::CloudFormation, Format::Terraform] {
        let tables = rendered_tables(format, &ExportOptions::default(), &[]);
        let mut names: Vec<&str> = tables.iter().map(|t| str_of(t, "TableName")).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["storekit_kv", "storekit_storekit_unique", "storekit_users"],
            "{format:?}"
        );
        let ttl: Vec<&Value> = tables
            .iter()
            .filter_map(|t| t.get("TimeToLiveSpecification"))
            .collect();
        assert_eq!(
            ttl,
            [&json!({"AttributeName": "ttl", "Enabled": true})],
            "{format:?}"
        );
    }
    assert!(export::terraform(&ExportOptions::default().prefix("bad-prefix"), &[]).is_err());
}

/// Tables made from the export are the store's: nothing to migrate, no difference, and the
/// declared table adopted as it is, its unique index built and recorded.
async fn exported_tables_are_the_store_s_own(format: Format) {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let prefix = format!("ex{}_", std::process::id());
    let prefix = match format {
        Format::CloudFormation => format!("{prefix}cf_"),
        Format::Terraform => format!("{prefix}tf_"),
    };
    let client = suite::client(&endpoint);
    let schema = events();
    let options = ExportOptions::default().prefix(&prefix);
    apply_all(&client, &rendered_tables(format, &options, &[&schema])).await;
    let store = suite::store(&endpoint, &prefix, IdKind::Uuid);
    let outcome = std::panic::AssertUnwindSafe(async {
        let report = store.migrate_report().await.expect("migrate");
        assert_eq!(report.created, Vec::<String>::new(), "{format:?}");
        assert_eq!(report.present.len(), 4, "three tables and TTL: {report:?}");
        assert_eq!(
            store.schema_differences().await.expect("differences"),
            [],
            "{format:?}"
        );
        assert_eq!(
            store.ensure_table(&schema).await.expect("adopted"),
            Ensured::IndexesAdded(vec!["by_ref".into()]),
            "only the unique index, which DynamoDB has no notion of, is built"
        );
        assert_eq!(
            store.ensure_table(&schema).await.expect("again"),
            Ensured::Unchanged
        );
        assert_eq!(
            store.schema_differences().await.expect("differences"),
            [],
            "with the catalog recorded"
        );
        let listed = storekit_core::transfer::TransferStore::tables(&store)
            .await
            .expect("tables");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].shape(), schema.shape(), "int and float keys kept");
    });
    let outcome = futures::FutureExt::catch_unwind(outcome).await;
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Conformance cases on tables made from the export, each on a prefix of its own, `parallel`
/// at a time.
async fn conformance_on_exported_tables(format: Format, groups: &[&str], parallel: usize) {
    let setup = move |ctx: SetupContext| async move {
        let endpoint = common::endpoint()?;
        let options = ExportOptions::default()
            .prefix(&ctx.prefix)
            .id_kind(ctx.id_kind);
        apply_all(
            &suite::client(&endpoint),
            &rendered_tables(format, &options, &[]),
        )
        .await;
        Some(suite::fixture(suite::store(
            &endpoint,
            &ctx.prefix,
            ctx.id_kind,
        )))
    };
    suite::run_groups(groups, parallel, setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloudformation_tables_are_the_store_s_own() {
    exported_tables_are_the_store_s_own(Format::CloudFormation).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terraform_tables_are_the_store_s_own() {
    exported_tables_are_the_store_s_own(Format::Terraform).await;
}

/// One test, so that its cases do not compete with each other's: the kv cases hold deadlines
/// of a few hundred milliseconds, which a loaded DynamoDB Local on a small machine overruns,
/// so they run one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_passes_on_exported_tables() {
    if common::endpoint().is_none() {
        return;
    }
    conformance_on_exported_tables(Format::CloudFormation, &["kv"], 1).await;
    conformance_on_exported_tables(
        Format::CloudFormation,
        &["users_uuid", "users_int", "tables"],
        2,
    )
    .await;
    conformance_on_exported_tables(Format::Terraform, &["kv"], 1).await;
    conformance_on_exported_tables(Format::Terraform, &["users_uuid", "tables"], 2).await;
}

/// A fresh prefix's migration creates every table and TTL, and a second finds them present;
/// tables made otherwise are reported with each difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_reports_and_differences_are_found() {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let prefix = format!("df{}_", std::process::id());
    let store = suite::store(&endpoint, &prefix, IdKind::Uuid);
    let outcome = std::panic::AssertUnwindSafe(async {
        // Made from the export, but with the users table's sort key a number and no TTL on
        // the kv table; the marker table is left out.
        let mut tables = rendered_tables(
            Format::CloudFormation,
            &ExportOptions::default().prefix(&prefix),
            &[],
        );
        tables.retain(|t| !str_of(t, "TableName").ends_with("storekit_unique"));
        for table in &mut tables {
            if str_of(table, "TableName").ends_with("users") {
                table["AttributeDefinitions"][1]["AttributeType"] = json!("N");
            }
            if let Some(properties) = table.as_object_mut() {
                properties.remove("TimeToLiveSpecification");
            }
        }
        apply_all(&suite::client(&endpoint), &tables).await;
        let found: Vec<String> = store
            .schema_differences()
            .await
            .expect("differences")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                format!(
                    "table \"{prefix}users\": key schema is (HASH pk S, RANGE sk N), expected \
                     (HASH pk S, RANGE sk S)"
                ),
                format!("table \"{prefix}kv\": time to live is not enabled, expected on \"ttl\""),
                format!("table \"{prefix}storekit_unique\": missing"),
            ]
        );
        assert!(store.migrate().await.is_err(), "a mistyped key is refused");
    });
    let outcome = futures::FutureExt::catch_unwind(outcome).await;
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    let fresh = suite::store(&endpoint, &format!("{prefix}m_"), IdKind::Uuid);
    let first = fresh.migrate_report().await.expect("migrate");
    let second = fresh.migrate_report().await.expect("again");
    fresh.drop_tables().await.expect("drop_tables");
    assert_eq!(first.created.len(), 4, "{first:?}");
    assert!(first.present.is_empty(), "{first:?}");
    assert_eq!(second.created, Vec::<String>::new());
    assert_eq!(second.present, first.created);
}

#[test]
fn a_table_whose_records_expire_renders_with_its_ttl() {
    let sessions = TableSchema::builder("sessions", KeyDef::text("id"))
        .ttl("expires_at")
        .build()
        .expect("schema");
    let options = ExportOptions::default().prefix("app_").tables_only();
    for format in [Format::CloudFormation, Format::Terraform] {
        let tables = rendered_tables(format, &options, &[&sessions, &products()]);
        let ttl_of = |name: &str| {
            tables
                .iter()
                .find(|t| t["TableName"] == name)
                .expect("rendered")
                .get("TimeToLiveSpecification")
                .cloned()
        };
        assert_eq!(
            ttl_of("app_sessions"),
            Some(json!({"AttributeName": "expires_at", "Enabled": true})),
            "{format:?}"
        );
        assert_eq!(ttl_of("app_products"), None, "{format:?}");
    }
}

/// The catalogue's table as its Terraform declares it (exact name, an `INCLUDE` index,
/// provisioned 20/20 and 10/10), exported in either format and applied as CloudFormation or
/// Terraform would: storekit adopts what comes back with no drift, and the export of the live
/// catalog renders the same properties again.
async fn a_provisioned_table_comes_back_from_its_export(format: Format) {
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let name = format!("catalogue-{}-{format:?}", std::process::id()).to_lowercase();
    let schema = TableSchema::builder(&name, KeyDef::text("id"))
        .query_index(
            QueryIndex::new("product-name-index", KeyDef::text("name"), None)
                .include(["price", "updated_at"])
                .throughput(Throughput::new(10, 10)),
        )
        .billing(Billing::Provisioned(Throughput::new(20, 20)))
        .exact_name()
        .build()
        .expect("valid schema");
    let client = suite::client(&endpoint);
    let options = ExportOptions::default().tables_only();
    // The export holds the unique markers' table too, which this store makes itself.
    let exported: Vec<Value> = rendered_tables(format, &options, &[&schema])
        .into_iter()
        .filter(|table| table["TableName"] == json!(name))
        .collect();
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_eq!(
        exported[0]["ProvisionedThroughput"],
        json!({"ReadCapacityUnits": 20, "WriteCapacityUnits": 20})
    );
    apply_all(&client, &exported).await;
    // A store of its own per format: the two tests run at once, and each store's catalog
    // must hold its own table only.
    let prefix = match format {
        Format::CloudFormation => format!("cat{}_cf_", std::process::id()),
        Format::Terraform => format!("cat{}_tf_", std::process::id()),
    };
    let store = suite::store(&endpoint, &prefix, IdKind::Uuid);
    let outcome = std::panic::AssertUnwindSafe(async {
        store.migrate().await.expect("migrate");
        let described = client
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .expect("describe");
        let table = described.table().expect("table");
        let units = table.provisioned_throughput().expect("provisioned");
        assert_eq!(
            (units.read_capacity_units(), units.write_capacity_units()),
            (Some(20), Some(20))
        );
        let index = &table.global_secondary_indexes()[0];
        assert_eq!(
            index.projection().map(|p| p.non_key_attributes()),
            Some(&["price".to_owned(), "updated_at".to_owned()][..])
        );
        assert_eq!(
            store
                .ensure_table(&schema)
                .await
                .expect("adopted with no drift"),
            Ensured::Unchanged,
            "{format:?}"
        );
        assert_eq!(
            store.schema_differences().await.expect("differences"),
            [],
            "{format:?}"
        );
    });
    let outcome = futures::FutureExt::catch_unwind(outcome).await;
    client
        .delete_table()
        .table_name(&name)
        .send()
        .await
        .expect("delete the exported table");
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn a_provisioned_table_comes_back_from_its_cloudformation() {
    a_provisioned_table_comes_back_from_its_export(Format::CloudFormation).await;
}

#[tokio::test]
async fn a_provisioned_table_comes_back_from_its_terraform() {
    a_provisioned_table_comes_back_from_its_export(Format::Terraform).await;
}
