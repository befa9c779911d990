//! Query indexes: their order and pages, sparse records, updates that move a record between
//! partitions, ties on the sort key, and verified queries over stale hits.

use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{Document, Query, Record, SortCondition, TableSchema, TableStore};

use super::{doc, ensure, get, insert, products, settled, things};
use crate::Fixture;

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.document["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every record a query matches, following cursors page by page.
async fn all_pages(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: Query,
) -> (Vec<Record>, usize) {
    let (mut records, mut pages, mut query) = (Vec::new(), 0, query);
    loop {
        let page = store.query(schema, &query).await.expect("query");
        pages += 1;
        records.extend(page.items);
        match page.next {
            Some(cursor) => query = query.after(cursor),
            None => return (records, pages),
        }
        assert!(pages < 10_000, "the cursors never end");
    }
}

/// The catalogue's query: products of one name, newest first, a page at a time.
pub async fn products_by_name_newest_first(f: &Fixture) {
    let schema = products();
    let store = ensure(f, &schema).await;
    let times = [
        1_700_000_000.25,
        1_700_000_003.5,
        1_700_000_001.0,
        1_700_000_002.75,
        1_600_000_000.0,
    ];
    for (i, at) in times.iter().enumerate() {
        insert(
            store,
            &schema,
            json!({"id": format!("lamp-{i}"), "name": "lamp", "updated_at": at, "price": i}),
        )
        .await;
    }
    insert(
        store,
        &schema,
        json!({"id": "desk-0", "name": "desk", "updated_at": 1_800_000_000.0}),
    )
    .await;
    let query = Query::index("product-name-index", "lamp")
        .descending()
        .limit(2);
    settled(
        store,
        &schema,
        &Query::index("product-name-index", "lamp"),
        |p| p.items.len() == 5,
    )
    .await;
    let (records, pages) = all_pages(store, &schema, query).await;
    assert_eq!(
        ids(&records),
        ["lamp-1", "lamp-3", "lamp-2", "lamp-0", "lamp-4"]
    );
    assert_eq!(pages, 3);
    assert_eq!(
        records[2].document["updated_at"],
        json!(1_700_000_001),
        "an integral float reads back as an integer"
    );
    let recent = store
        .query(
            &schema,
            &Query::index("product-name-index", "lamp")
                .sort(SortCondition::Gt(1_700_000_001.0.into())),
        )
        .await
        .expect("query");
    assert_eq!(ids(&recent.items), ["lamp-3", "lamp-1"]);
    let nan = store
        .query(
            &schema,
            &Query::index("product-name-index", "lamp").sort(SortCondition::Gt(f64::NAN.into())),
        )
        .await;
    assert_matches!(nan, Err(Error::InvalidInput { .. }));
}

/// A record without an index's field (or with `null` there) is not in that index, and is
/// still in the others.
pub async fn sparse_indexes_leave_out_records_without_the_field(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "both", "group": "g", "rank": 1, "name": "n"}),
    )
    .await;
    insert(
        store,
        &schema,
        json!({"id": "no-rank", "group": "g", "name": "n"}),
    )
    .await;
    insert(
        store,
        &schema,
        json!({"id": "null-group", "group": null, "rank": 2, "name": "n"}),
    )
    .await;
    let null = get(store, &schema, &"null-group".into())
        .await
        .expect("stored");
    assert!(
        !null.document.contains_key("group"),
        "a null index key is dropped, as DynamoDB needs"
    );
    let by_name = settled(store, &schema, &Query::index("by-name", "n"), |p| {
        p.items.len() == 3
    })
    .await;
    assert_eq!(by_name.items.len(), 3);
    let by_group = settled(store, &schema, &Query::index("by-group", "g"), |p| {
        p.items.len() == 1
    })
    .await;
    assert_eq!(
        ids(&by_group.items),
        ["both"],
        "only records with both index keys"
    );
    let wrong = store
        .insert(
            &schema,
            doc(json!({"id": "bad", "group": "g", "rank": "one"})),
        )
        .await;
    assert_matches!(wrong, Err(Error::InvalidInput { .. }));
}

/// An update moves a record from one index partition to another; a delete takes it out of
/// every index.
pub async fn updates_move_and_deletes_leave_every_index(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "m", "group": "old", "rank": 1, "name": "x", "sku": "M"}),
    )
    .await;
    insert(
        store,
        &schema,
        json!({"id": "stay", "group": "old", "rank": 2}),
    )
    .await;
    let mut mv = |mut d: Document| {
        d.insert("group".into(), json!("new"));
        d.insert("rank".into(), json!(5));
        Ok(d)
    };
    store
        .update(&schema, &"m".into(), &mut mv)
        .await
        .expect("update");
    let old = settled(store, &schema, &Query::index("by-group", "old"), |p| {
        ids(&p.items) == ["stay"]
    })
    .await;
    assert_eq!(ids(&old.items), ["stay"]);
    let new = settled(store, &schema, &Query::index("by-group", "new"), |p| {
        p.items.len() == 1
    })
    .await;
    assert_eq!(
        (ids(&new.items), new.items[0].document["rank"].clone()),
        (vec!["m".to_owned()], json!(5))
    );
    assert!(
        store
            .delete(&schema, &"m".into(), None)
            .await
            .expect("delete")
    );
    let new = settled(store, &schema, &Query::index("by-group", "new"), |p| {
        p.items.is_empty()
    })
    .await;
    assert!(new.items.is_empty());
    let by_name = settled(store, &schema, &Query::index("by-name", "x"), |p| {
        p.items.is_empty()
    })
    .await;
    assert!(by_name.items.is_empty());
    assert_eq!(
        store
            .get_by_unique(&schema, "sku", &["M".into()])
            .await
            .expect("lookup"),
        None
    );
}

/// Records that tie on an index's sort key come once each, across pages.
pub async fn ties_on_the_index_sort_key_come_once_each(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for i in 0..23 {
        insert(
            store,
            &schema,
            json!({"id": format!("t{i:02}"), "group": "tie", "rank": i % 3}),
        )
        .await;
    }
    settled(
        store,
        &schema,
        &Query::index("by-group", "tie").limit(100),
        |p| p.items.len() == 23,
    )
    .await;
    for descending in [false, true] {
        let mut query = Query::index("by-group", "tie").limit(4);
        if descending {
            query = query.descending();
        }
        let (records, _) = all_pages(store, &schema, query).await;
        let mut seen = ids(&records);
        let ranks: Vec<i64> = records
            .iter()
            .map(|r| r.document["rank"].as_i64().expect("rank"))
            .collect();
        let mut sorted = ranks.clone();
        sorted.sort_unstable();
        if descending {
            sorted.reverse();
        }
        assert_eq!(ranks, sorted, "in index order");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 23, "each record once");
    }
}

/// A verified index query drops hits whose record no longer matches, and returns records as
/// they are now, whether or not the backend's indexes lag.
pub async fn verified_queries_drop_stale_hits(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for i in 0..6 {
        insert(
            store,
            &schema,
            json!({"id": format!("v{i}"), "group": "a", "rank": i}),
        )
        .await;
    }
    settled(store, &schema, &Query::index("by-group", "a"), |p| {
        p.items.len() == 6
    })
    .await;
    for i in [1, 3] {
        let mut leave = |mut d: Document| {
            d.insert("group".into(), json!("b"));
            Ok(d)
        };
        store
            .update(&schema, &format!("v{i}").as_str().into(), &mut leave)
            .await
            .expect("update");
    }
    let mut bump = |mut d: Document| {
        d.insert("note".into(), json!("changed"));
        Ok(d)
    };
    store
        .update(&schema, &"v4".into(), &mut bump)
        .await
        .expect("update");
    store
        .delete(&schema, &"v5".into(), None)
        .await
        .expect("delete");
    let verified = store
        .query(&schema, &Query::index("by-group", "a").limit(2).verified())
        .await
        .expect("query");
    assert_eq!(
        ids(&verified.items),
        ["v0", "v2"],
        "a full page of records that still match"
    );
    let rest = store
        .query(
            &schema,
            &Query::index("by-group", "a")
                .limit(2)
                .verified()
                .after(verified.next.expect("more")),
        )
        .await
        .expect("query");
    assert_eq!(ids(&rest.items), ["v4"]);
    assert_eq!(
        rest.items[0].document["note"],
        json!("changed"),
        "as it is now"
    );
    assert_eq!(rest.items[0].version, 2);
}
