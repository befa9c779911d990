//! Pages and cursors: full pages with each record once, pages past DynamoDB's 1 MB reads,
//! cursors bound to their query, scans, counts and streams.

use futures::TryStreamExt as _;
use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{
    MAX_PAGE, Query, Record, RecordKey, Scan, SortCondition, query_stream, scan_stream,
};

use super::{ensure, insert, scan_page, series, sorts, words};
use crate::Fixture;

/// At limits 1, 7 and 100, every page but the last is full, and every record comes once.
pub async fn pages_are_full_and_each_record_comes_once(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..50 {
        insert(store, &schema, json!({"p": "p", "n": n})).await;
    }
    for limit in [1, 7, 100] {
        for descending in [false, true] {
            let mut query = Query::table("p").limit(limit);
            if descending {
                query = query.descending();
            }
            let (mut pages, mut seen, mut query) = (0, Vec::new(), query);
            loop {
                let page = store.query(&schema, &query).await.expect("query");
                pages += 1;
                if page.next.is_some() {
                    assert_eq!(
                        page.items.len(),
                        limit,
                        "a page that is not the last is full"
                    );
                }
                seen.extend(
                    page.items
                        .iter()
                        .map(|r| r.document["n"].as_i64().expect("int")),
                );
                match page.next {
                    Some(cursor) => query = query.after(cursor),
                    None => break,
                }
            }
            let mut expected: Vec<i64> = (0..50).collect();
            if descending {
                expected.reverse();
            }
            assert_eq!(seen, expected, "limit {limit}");
            assert_eq!(
                pages,
                50usize.div_ceil(limit),
                "limit {limit}: no empty last page"
            );
        }
    }
    let empty = store
        .query(&schema, &Query::table("none"))
        .await
        .expect("query");
    assert!(empty.items.is_empty() && empty.next.is_none());
    for limit in [0, MAX_PAGE + 1] {
        let refused = store.query(&schema, &Query::table("p").limit(limit)).await;
        assert_matches!(refused, Err(Error::InvalidInput { what: "limit", .. }));
    }
}

/// 40 records of ~300 KB in one partition, 12 MB in all: one query returns them all, following
/// DynamoDB's 1 MB pages underneath.
pub async fn a_query_past_one_megabyte_fills_its_page(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let big = "x".repeat(300_000);
    for n in 0..40 {
        insert(store, &schema, json!({"p": "big", "n": n, "blob": big})).await;
    }
    let page = store
        .query(&schema, &Query::table("big").limit(100))
        .await
        .expect("query");
    assert_eq!(page.items.len(), 40);
    assert!(page.next.is_none());
    let page = store
        .query(&schema, &Query::table("big").limit(10).descending())
        .await
        .expect("query");
    assert_eq!(
        sorts(&page.items, "n"),
        (30..40).rev().map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert!(page.next.is_some());
}

/// A cursor works only for the query that returned it: garbled, edited or another query's
/// cursors are `InvalidInput`.
pub async fn garbled_and_foreign_cursors_are_invalid_input(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..5 {
        insert(store, &schema, json!({"p": "a", "n": n})).await;
        insert(store, &schema, json!({"p": "b", "n": n})).await;
    }
    let page = store
        .query(&schema, &Query::table("a").limit(2))
        .await
        .expect("query");
    let cursor = page.next.expect("more");
    let scanned = store
        .scan(&schema, &Scan::new().limit(2))
        .await
        .expect("scan")
        .next
        .expect("more");
    let mut edited = cursor.clone();
    edited.insert(3, 'x');
    let foreign = [
        (Query::table("a").limit(2).after("garbage!"), "garbage"),
        (Query::table("a").limit(2).after(""), "empty"),
        (Query::table("a").limit(2).after(edited.as_str()), "edited"),
        (
            Query::table("b").limit(2).after(cursor.as_str()),
            "another partition",
        ),
        (
            Query::table("a")
                .limit(2)
                .descending()
                .after(cursor.as_str()),
            "another order",
        ),
        (
            Query::table("a")
                .limit(2)
                .sort(SortCondition::Ge(0.into()))
                .after(cursor.as_str()),
            "another condition",
        ),
        (
            Query::table("a").limit(2).after(scanned.as_str()),
            "a scan's cursor",
        ),
    ];
    for (query, what) in foreign {
        let result = store.query(&schema, &query).await;
        assert_matches!(
            result,
            Err(Error::InvalidInput { what: "cursor", .. }),
            "{what}"
        );
    }
    let scan = store
        .scan(&schema, &Scan::new().limit(2).after(cursor.as_str()))
        .await;
    assert_matches!(scan, Err(Error::InvalidInput { what: "cursor", .. }));
    let other_table = store
        .query(&words(), &Query::table("a").after(cursor.as_str()))
        .await;
    assert_matches!(
        other_table,
        Err(Error::InvalidInput { .. }) | Err(Error::NotFound { .. })
    );
    let next = store
        .query(&schema, &Query::table("a").limit(2).after(cursor))
        .await
        .expect("the real cursor works");
    assert_eq!(sorts(&next.items, "n"), [json!(2), json!(3)]);
}

/// Scan pages through every record once; count is exact; a table that does not exist is
/// `NotFound` and dropping it twice says so.
pub async fn scan_and_count_see_every_record_once(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..57 {
        insert(store, &schema, json!({"p": format!("p{}", n % 4), "n": n})).await;
    }
    assert_eq!(store.count(&schema).await.expect("count"), 57);
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = store
            .scan(&schema, &scan_page(10, cursor.as_deref()))
            .await
            .expect("scan");
        pages += 1;
        if page.next.is_some() {
            assert_eq!(page.items.len(), 10);
        }
        seen.extend(
            page.items
                .iter()
                .map(|r| r.document["n"].as_i64().expect("n")),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..57).collect::<Vec<i64>>());
    assert_eq!(pages, 6);
    let streamed: Vec<Record> = scan_stream(super::store(f), schema.clone(), Scan::new())
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(streamed.len(), 57);
    assert!(store.drop_table(&schema).await.expect("drop"));
    assert!(!store.drop_table(&schema).await.expect("drop again"));
    let gone = store.get(&schema, &RecordKey::with_sort("p0", 0)).await;
    assert_matches!(gone, Err(Error::NotFound { what: "table" }));
}

/// The stream over a query follows every cursor.
pub async fn query_streams_follow_every_page(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..230 {
        insert(store, &schema, json!({"p": "s", "n": n})).await;
    }
    let all: Vec<Record> = query_stream(
        super::store(f),
        schema.clone(),
        Query::table("s").limit(50).descending(),
    )
    .try_collect()
    .await
    .expect("stream");
    assert_eq!(
        sorts(&all, "n"),
        (0..230).rev().map(|n| json!(n)).collect::<Vec<_>>()
    );
}
