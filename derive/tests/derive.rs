//! `#[derive(Record)]` gives the schema the builder gives, for the tables of the products and
//! orders examples and one with every kind of key; its keys and queries find the records a
//! table holds on the memory store (the reference backend).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use storekit::table::{
    KeyDef, KeyType, QueryIndex, RecordKey, RecordType, SortCondition, Table, TableSchema,
    TableShape, TableStore,
};
use storekit::uuid::Uuid;
use storekit::{MemoryStore, Record};

/// The products example's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Record)]
#[storekit(
    table = "products",
    partition = id,
    index(name = "product-name-index", partition = name, sort = updated_at, projection = ALL),
)]
struct Product {
    id: Uuid,
    name: String,
    description: Option<String>,
    price_cents: u64,
    updated_at: f64,
}

/// The orders example's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Record)]
#[storekit(table = "orders", partition = customer_id, sort = order_id)]
#[storekit(index(name = "status-index", partition = status, sort = last_update))]
struct Order {
    customer_id: String,
    order_id: String,
    status: String,
    total_cents: u64,
    last_update: i64,
}

/// Every key type, serde's renames, a sparse index, a unique index and a ttl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Record)]
#[serde(rename_all = "camelCase")]
#[storekit(
    table = "events",
    partition = stream_id,
    sort = sequence,
    index(name = "by-digest", partition = digest),
    index(name = "by.score", partition = kind, sort = score),
    index(name = "by-owner", partition = owner, sort = small),
    unique(name = "event-ref", fields(kind, reference)),
    ttl = expires_at,
    version = "_storekit_version",
)]
struct Event {
    stream_id: String,
    sequence: i64,
    #[serde(with = "storekit::table::record::base64")]
    digest: Vec<u8>,
    #[serde(rename = "type")]
    kind: String,
    score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<Uuid>,
    small: u8,
    reference: Option<String>,
    expires_at: Option<i64>,
}

/// A borrowed record (written, never read back as itself), and an explicit path to storekit.
#[derive(Serialize, Record)]
#[storekit(crate = "::storekit", table = "borrowed", partition = id, sort = at)]
struct Borrowed<'a> {
    id: &'a str,
    at: u32,
    note: &'a str,
}

/// The catalogue's table, opened by its own name (no store prefix), its index projecting
/// `INCLUDE` as the catalogue's Terraform declares it, and a `KEYS_ONLY` one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Record)]
#[storekit(
    table = "product-table",
    exact_name,
    partition = id,
    index(name = "product-name-index", partition = name, projection = INCLUDE(updated_at, price)),
    index(name = "name-keys", partition = name, projection = KEYS_ONLY)
)]
struct CatalogueProduct {
    id: String,
    name: String,
    price: f64,
    updated_at: f64,
}

fn same(derived: &TableSchema, built: &TableSchema) {
    assert_eq!(derived.name(), built.name());
    assert_eq!(derived.shape(), built.shape());
}

#[test]
fn exact_name_is_the_builders() {
    let derived = CatalogueProduct::schema();
    assert!(derived.is_exact_name());
    assert_eq!(derived.stored_name("shop_"), "product-table");
    same(
        &derived,
        &TableSchema::builder("product-table", KeyDef::text("id"))
            .query_index(
                QueryIndex::new("product-name-index", KeyDef::text("name"), None)
                    .include(["price", "updated_at"]),
            )
            .query_index(QueryIndex::new("name-keys", KeyDef::text("name"), None).keys_only())
            .exact_name()
            .build()
            .expect("valid"),
    );
    assert!(!Product::schema().is_exact_name());
}

#[test]
fn the_products_and_orders_schemas_are_the_builders() {
    same(
        &Product::schema(),
        &TableSchema::builder("products", KeyDef::text("id"))
            .index(
                "product-name-index",
                KeyDef::text("name"),
                Some(KeyDef::float("updated_at")),
            )
            .build()
            .expect("valid"),
    );
    same(
        &Order::schema(),
        &TableSchema::builder("orders", KeyDef::text("customer_id"))
            .sort_key(KeyDef::text("order_id"))
            .index(
                "status-index",
                KeyDef::text("status"),
                Some(KeyDef::int("last_update")),
            )
            .build()
            .expect("valid"),
    );
}

#[test]
fn key_types_and_names_follow_the_fields() {
    same(
        &Event::schema(),
        &TableSchema::builder("events", KeyDef::text("streamId"))
            .sort_key(KeyDef::int("sequence"))
            .index("by-digest", KeyDef::bytes("digest"), None)
            .index(
                "by.score",
                KeyDef::text("type"),
                Some(KeyDef::float("score")),
            )
            .index(
                "by-owner",
                KeyDef::text("owner"),
                Some(KeyDef::int("small")),
            )
            .unique(
                "event-ref",
                [KeyDef::text("type"), KeyDef::text("reference")],
            )
            .ttl("expiresAt")
            .build()
            .expect("valid"),
    );
    let shape: TableShape = Event::schema().shape();
    assert_eq!(
        shape.indexes[1].sort.as_ref().map(|k| k.kind),
        Some(KeyType::Float)
    );
    same(
        &Borrowed::schema(),
        &TableSchema::builder("borrowed", KeyDef::text("id"))
            .sort_key(KeyDef::int("at"))
            .build()
            .expect("valid"),
    );
    let borrowed = Borrowed {
        id: "b",
        at: 4,
        note: "",
    };
    assert_eq!(
        Borrowed::key(borrowed.id, borrowed.at),
        RecordKey::with_sort("b", 4_i64)
    );
    assert!(borrowed.note.is_empty());
    assert_eq!(
        Event::key("s", 7),
        RecordKey::with_sort("s", 7_i64),
        "a key of the fields' values"
    );
}

/// The rules the derive checks when it compiles are core's: if one of these fails, core's
/// rules changed, and `derive/src/lib.rs` must change with them.
#[test]
fn the_derive_checks_the_rules_core_has() {
    use storekit::table::{
        MAX_INDEXES, MAX_UNIQUE_COMPONENTS, MAX_UNIQUE_INDEXES, NAME_LENGTH, RESERVED_FIELD_PREFIX,
        RESERVED_TABLE_NAMES, RESERVED_TABLE_PREFIXES,
    };
    assert_eq!(NAME_LENGTH, (3, 40));
    assert_eq!(
        RESERVED_TABLE_NAMES,
        [
            "users",
            "oauth_accounts",
            "access_tokens",
            "kv",
            "kv_rowid",
            "storekit_meta",
            "storekit_tables",
            "storekit_unique",
        ]
    );
    assert_eq!(RESERVED_TABLE_PREFIXES, ["sqlite_"]);
    assert_eq!(RESERVED_FIELD_PREFIX, "_storekit");
    assert_eq!(
        (MAX_INDEXES, MAX_UNIQUE_INDEXES, MAX_UNIQUE_COMPONENTS),
        (20, 20, 4)
    );
}

fn run(test: impl Future<Output = storekit::Result<()>>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(test)
        .expect("the walk works");
}

#[test]
fn a_derived_table_round_trips_on_the_memory_store() {
    run(async {
        let store: Arc<dyn TableStore> = Arc::new(MemoryStore::new());
        let orders: Table<Order> = Order::table(store.clone());
        orders.ensure().await?;
        let order = |id: &str, status: &str, at: i64| Order {
            customer_id: "ada".to_owned(),
            order_id: id.to_owned(),
            status: status.to_owned(),
            total_cents: 100,
            last_update: at,
        };
        for o in [
            order("o-1", "placed", 1),
            order("o-2", "shipped", 2),
            order("o-3", "shipped", 3),
        ] {
            orders.insert(&o).await?;
        }
        let got = orders.get(Order::key("ada", "o-2")).await?;
        assert_eq!(got.map(|v| v.record), Some(order("o-2", "shipped", 2)));
        let page = orders
            .query(Order::query("ada").sort(SortCondition::Gt("o-1".into())))
            .await?;
        let ids: Vec<_> = page
            .items
            .iter()
            .map(|v| v.record.order_id.as_str())
            .collect();
        assert_eq!(ids, ["o-2", "o-3"]);
        let page = orders
            .query(Order::query_status_index("shipped").descending())
            .await?;
        let ids: Vec<_> = page
            .items
            .iter()
            .map(|v| v.record.order_id.as_str())
            .collect();
        assert_eq!(ids, ["o-3", "o-2"]);

        let products = Product::table(store.clone());
        products.ensure().await?;
        let lamp = Product {
            id: Uuid::now_v7(),
            name: "lamp".to_owned(),
            description: None,
            price_cents: 900,
            updated_at: 1.5,
        };
        products.insert(&lamp).await?;
        let got = products.get(Product::key(lamp.id)).await?;
        assert_eq!(got.map(|v| v.record), Some(lamp.clone()));
        let page = products
            .query(Product::query_product_name_index("lamp"))
            .await?;
        assert_eq!(page.items.len(), 1);

        // Renamed fields, bytes, a float kept as `f32`, a sparse index, a unique index.
        let events = Event::table(store.clone());
        events.ensure().await?;
        let event = |sequence: i64, owner: Option<Uuid>, reference: &str| Event {
            stream_id: "s".to_owned(),
            sequence,
            digest: vec![0, 1, 2, u8::try_from(sequence).unwrap_or(0)],
            kind: "click".to_owned(),
            score: 0.1,
            owner,
            small: 3,
            reference: Some(reference.to_owned()),
            expires_at: None,
        };
        let owner = Uuid::now_v7();
        events.insert(&event(1, Some(owner), "r-1")).await?;
        events.insert(&event(2, None, "r-2")).await?;
        let stored = store
            .get(&Event::schema(), &Event::key("s", 1))
            .await?
            .expect("stored");
        assert_eq!(stored.document["type"], "click", "stored by its serde name");
        assert_eq!(stored.document["digest"], "AAECAQ==", "bytes as base64");
        let by_digest = events.query(Event::query_by_digest(&[0, 1, 2, 2])).await?;
        assert_eq!(by_digest.items.len(), 1);
        assert_eq!(by_digest.items[0].record.sequence, 2);
        let by_score = events
            .query(Event::query_by_score("click").sort(SortCondition::Eq(
                storekit::table::KeyValue::Float(f64::from(0.1_f32)),
            )))
            .await?;
        assert_eq!(by_score.items.len(), 2, "the f32 key is found by its value");
        let owned = events.query(Event::query_by_owner(owner)).await?;
        assert_eq!(
            owned.items.len(),
            1,
            "a record without an owner is not in the index"
        );
        let (index, values) = Event::unique_event_ref("click", "r-2");
        let found = events.get_by_unique(index, &values).await?;
        assert_eq!(found.map(|v| v.record.sequence), Some(2));
        let duplicate = events.insert(&event(3, None, "r-1")).await;
        assert!(
            matches!(duplicate, Err(storekit::Error::AlreadyExists { .. })),
            "{duplicate:?}"
        );
        Ok(())
    });
}

#[test]
fn misuse_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
