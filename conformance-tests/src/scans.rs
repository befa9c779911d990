//! Filtered scans, the records a page read to fill it, and read budgets (issue 21, item 2):
//! a scan keeps a query's promises (full pages, exact and filter-bound cursors), and every page
//! of a query or a scan says how many records it read, which a read budget bounds.
//!
//! Read counts are exact on memory and SQL ([`Capabilities::exact_read_counts`]); on DynamoDB
//! they are the `ScannedCount` of the page's requests, at least the exact count and never
//! above the budget.
//!
//! [`Capabilities::exact_read_counts`]: crate::Capabilities::exact_read_counts

use std::collections::BTreeSet;

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{
    Condition, KeyDef, MAX_READ_BUDGET, Query, QueryPage, Record, Scan, Table, TableSchema,
    TableStore, scan_stream,
};

use crate::Fixture;
use crate::tables::doc;

/// Records in the table: 10 partitions of 50.
const RECORDS: i64 = 500;

/// `scans`: partition `p` (`p0` … `p9`), sort `n`, each record's `n` unique in the table.
fn schema() -> TableSchema {
    TableSchema::builder("scans", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .build()
        .expect("valid schema")
}

/// The table with [`RECORDS`] records, 1 in 50 of which has `hit: true` (`n % 50 == 7`).
async fn filled(f: &Fixture) -> (&dyn TableStore, TableSchema) {
    let schema = schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let documents: Vec<_> = (0..RECORDS)
        .map(|n| {
            doc(json!({
                "p": format!("p{}", n % 10),
                "n": n,
                "hit": n % 50 == 7,
                "kind": if n % 2 == 0 { "even" } else { "odd" },
            }))
        })
        .collect();
    for chunk in documents.chunks(100) {
        store
            .put_many(&schema, chunk.to_vec())
            .await
            .expect("put_many");
    }
    (store, schema)
}

fn hit() -> Condition {
    Condition::eq("hit", true)
}

fn number(record: &Record) -> i64 {
    record.document["n"].as_i64().expect("n")
}

/// The `n` of every record of `pages`, in order.
fn numbers_of(pages: &[QueryPage]) -> Vec<i64> {
    pages
        .iter()
        .flat_map(|p| p.items.iter().map(number))
        .collect()
}

/// Every page of a read, `page` answering the page after a cursor (the first without one).
async fn every_page(mut page: impl AsyncFnMut(Option<String>) -> QueryPage) -> Vec<QueryPage> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let read = page(cursor).await;
        cursor = read.next.clone();
        pages.push(read);
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 2000, "the pages do not end");
    }
}

/// Every page of `scan`.
async fn scan_pages(store: &dyn TableStore, schema: &TableSchema, scan: &Scan) -> Vec<QueryPage> {
    every_page(async |cursor: Option<String>| {
        let scan = match cursor {
            Some(cursor) => scan.clone().after(cursor),
            None => scan.clone(),
        };
        store.scan(schema, &scan).await.expect("scan")
    })
    .await
}

/// Every page of `query`.
async fn query_pages(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: &Query,
) -> Vec<QueryPage> {
    every_page(async |cursor: Option<String>| {
        let query = match cursor {
            Some(cursor) => query.clone().after(cursor),
            None => query.clone(),
        };
        store.query(schema, &query).await.expect("query")
    })
    .await
}

/// The `n` of every record of `pages`, each exactly once (asserted), sorted.
fn once_each(pages: &[QueryPage], what: &str) -> Vec<i64> {
    let mut seen = BTreeSet::new();
    for record in pages.iter().flat_map(|page| &page.items) {
        assert!(
            seen.insert(number(record)),
            "{what}: record {} came twice",
            number(record)
        );
    }
    seen.into_iter().collect()
}

/// Pages are full but the last, which holds at least one record unless it is the only one.
fn assert_full(pages: &[QueryPage], limit: usize, what: &str) {
    let sizes: Vec<usize> = pages.iter().map(|page| page.items.len()).collect();
    let (last, rest) = sizes.split_last().expect("a page");
    assert!(
        rest.iter().all(|&size| size == limit) && *last <= limit && (*last > 0 || rest.is_empty()),
        "{what}: page sizes {sizes:?}"
    );
}

fn refused(result: &storekit_core::Result<QueryPage>, what: &str) -> bool {
    matches!(result, Err(Error::InvalidInput { what: w, .. }) if *w == what)
}

/// Over 500 records where 1 in 50 matches, a filtered scan's pages are full at limits 1, 7 and
/// 100 and hold every match exactly once; each page read at least what it returned, and on
/// backends with exact counts the reads of all pages add up to the table.
pub async fn filtered_scans_are_full_and_exact(f: &Fixture) {
    let (store, schema) = filled(f).await;
    let expected: Vec<i64> = (0..RECORDS).filter(|n| n % 50 == 7).collect();
    for limit in [1, 7, 100] {
        let what = format!("limit {limit}");
        let pages = scan_pages(store, &schema, &Scan::new().filter(hit()).limit(limit)).await;
        assert_eq!(once_each(&pages, &what), expected, "{what}");
        assert_full(&pages, limit, &what);
        for page in &pages {
            assert!(
                page.read >= page.items.len() as u64,
                "{what}: read {}",
                page.read
            );
            assert!(page.items.iter().all(|r| r.document["hit"] == json!(true)));
        }
        let read: u64 = pages.iter().map(|page| page.read).sum();
        if f.capabilities.exact_read_counts {
            assert_eq!(
                read, RECORDS as u64,
                "{what}: the pages read the table once"
            );
        } else {
            assert!(read >= RECORDS as u64, "{what}: the pages read {read}");
        }
    }
    // A filter nothing meets: one empty page that read the whole table, no cursor.
    let none = store
        .scan(&schema, &Scan::new().filter(Condition::eq("hit", "yes")))
        .await
        .expect("scan");
    assert!(none.items.is_empty() && none.next.is_none(), "{none:?}");
    assert!(none.read >= RECORDS as u64, "read {}", none.read);
}

/// Without a filter, a page reads what it returns: exactly, on backends with exact counts, for
/// a scan and for a query; at least that, everywhere.
pub async fn unfiltered_pages_read_what_they_return(f: &Fixture) {
    let (store, schema) = filled(f).await;
    for limit in [1, 7, 100] {
        let pages = scan_pages(store, &schema, &Scan::new().limit(limit)).await;
        assert_eq!(once_each(&pages, "scan"), (0..RECORDS).collect::<Vec<_>>());
        assert_full(&pages, limit, "scan");
        for page in &pages {
            let returned = page.items.len() as u64;
            if f.capabilities.exact_read_counts {
                assert_eq!(page.read, returned, "scan, limit {limit}");
            } else {
                assert!(page.read >= returned, "scan, limit {limit}");
            }
        }
    }
    let pages = query_pages(store, &schema, &Query::table("p3").limit(7)).await;
    assert_eq!(pages.iter().map(|p| p.items.len()).sum::<usize>(), 50);
    for page in &pages {
        let returned = page.items.len() as u64;
        if f.capabilities.exact_read_counts {
            assert_eq!(page.read, returned, "query");
        } else {
            assert!(page.read >= returned, "query");
        }
    }
}

/// A filtered query's pages report their reads: at least what they return, and on backends
/// with exact counts, over all pages, the records of the partition; each page's read is the
/// records from its cursor up to its last record, so a page of 1 match in 50 reads 50.
pub async fn filtered_query_pages_count_their_reads(f: &Fixture) {
    let (store, schema) = filled(f).await;
    // Partition p7 holds n = 7, 17, …, 497; 7, 57, 107, … match (every fifth).
    let query = Query::table("p7").filter(hit()).limit(2);
    let pages = query_pages(store, &schema, &query).await;
    let numbers = numbers_of(&pages);
    assert_eq!(numbers, (0..10).map(|i| 7 + 50 * i).collect::<Vec<_>>());
    assert_full(&pages, 2, "query");
    for page in &pages {
        assert!(page.read >= page.items.len() as u64);
    }
    if f.capabilities.exact_read_counts {
        // Records 7 and 57 are the 1st and 6th of the partition: the first page reads 6; the
        // next ones 5 records per match, 10 a page; the last page reads through the end.
        let reads: Vec<u64> = pages.iter().map(|p| p.read).collect();
        assert_eq!(reads, [6, 10, 10, 10, 14], "{reads:?}");
        assert_eq!(reads.iter().sum::<u64>(), 50);
    }
}

/// A filtered scan's cursor continues only a scan with the same filter: another filter, no
/// filter, a query, all refuse it; an unfiltered scan's cursor is refused by a filtered scan.
pub async fn scan_cursors_are_bound_to_their_filter(f: &Fixture) {
    let (store, schema) = filled(f).await;
    let filtered = Scan::new().filter(hit()).limit(2);
    let cursor = store
        .scan(&schema, &filtered)
        .await
        .expect("scan")
        .next
        .expect("more pages");
    for (other, what) in [
        (
            Scan::new().filter(Condition::eq("hit", false)).limit(2),
            "another filter",
        ),
        (Scan::new().limit(2), "no filter"),
        (
            Scan::new()
                .filter(hit())
                .filter(Condition::eq("kind", "odd"))
                .limit(2),
            "a narrower filter",
        ),
    ] {
        let result = store.scan(&schema, &other.after(cursor.as_str())).await;
        assert!(refused(&result, "cursor"), "{what}: {result:?}");
    }
    let as_query = store
        .query(
            &schema,
            &Query::table("p7").filter(hit()).after(cursor.as_str()),
        )
        .await;
    assert!(refused(&as_query, "cursor"), "{as_query:?}");
    let plain = store
        .scan(&schema, &Scan::new().limit(2))
        .await
        .expect("scan")
        .next
        .expect("more pages");
    let result = store.scan(&schema, &filtered.clone().after(plain)).await;
    assert!(refused(&result, "cursor"), "{result:?}");
    // The same filter, built again, continues.
    let again = store
        .scan(&schema, &Scan::new().filter(hit()).limit(2).after(cursor))
        .await
        .expect("the same filter continues");
    assert_eq!(again.items.len(), 2);
}

/// A scan's filter may test the key fields (a scan has no key condition; DynamoDB's `Scan`
/// filters on them too) and every backend answers it alike; a query's filter may not.
pub async fn scan_filters_may_test_key_fields(f: &Fixture) {
    let (store, schema) = filled(f).await;
    let on_keys = Scan::new()
        .filter(Condition::eq("p", "p3"))
        .filter(Condition::lt("n", 100))
        .limit(3);
    let pages = scan_pages(store, &schema, &on_keys).await;
    assert_eq!(
        once_each(&pages, "keys"),
        [3, 13, 23, 33, 43, 53, 63, 73, 83, 93]
    );
    assert_full(&pages, 3, "keys");
    let query = store
        .query(&schema, &Query::table("p3").filter(Condition::lt("n", 100)))
        .await;
    assert!(refused(&query, "condition"), "{query:?}");
}

/// A read budget ends a page early once that many records are read: the page may be short,
/// even empty, with a cursor, and the pages still hold every match exactly once; a page never
/// reads over its budget, and on backends with exact counts a page cut short read exactly
/// the budget.
pub async fn read_budgets_cut_pages_and_continue_exactly(f: &Fixture) {
    let (store, schema) = filled(f).await;
    let expected: Vec<i64> = (0..RECORDS).filter(|n| n % 50 == 7).collect();
    for (limit, budget) in [(7, 30), (1, 1), (100, 64), (3, 200)] {
        let what = format!("scan, limit {limit}, budget {budget}");
        let scan = Scan::new().filter(hit()).limit(limit).read_budget(budget);
        let pages = scan_pages(store, &schema, &scan).await;
        assert_eq!(once_each(&pages, &what), expected, "{what}");
        let mut short = 0;
        for page in &pages {
            assert!(page.read <= budget, "{what}: read {}", page.read);
            assert!(page.items.len() <= limit);
            if page.items.len() < limit && page.next.is_some() {
                short += 1;
                if f.capabilities.exact_read_counts {
                    assert_eq!(page.read, budget, "{what}: a cut page read its budget");
                }
            }
        }
        // 9 partitions of 50 hold no match, more than any of these budgets: pages are cut.
        assert!(short > 0, "{what}: no page was cut");
        if f.capabilities.exact_read_counts {
            let read: u64 = pages.iter().map(|page| page.read).sum();
            assert_eq!(read, RECORDS as u64, "{what}");
        }
    }
    // A query: in order, every match of the partition once.
    let query = Query::table("p7").filter(hit()).limit(3).read_budget(8);
    let pages = query_pages(store, &schema, &query).await;
    let numbers = numbers_of(&pages);
    assert_eq!(numbers, (0..10).map(|i| 7 + 50 * i).collect::<Vec<_>>());
    assert!(pages.iter().all(|page| page.read <= 8));
    if f.capabilities.exact_read_counts {
        // 50 records, 8 a page: pages of 8 reads and a last one of 2.
        let reads: Vec<u64> = pages.iter().map(|page| page.read).collect();
        assert_eq!(reads, [8, 8, 8, 8, 8, 8, 2], "{reads:?}");
    }
    // Descending, the same matches backwards.
    let pages = query_pages(store, &schema, &query.descending()).await;
    let mut backwards = numbers_of(&pages);
    backwards.reverse();
    assert_eq!(backwards, (0..10).map(|i| 7 + 50 * i).collect::<Vec<_>>());
}

/// Without a filter, a budget under the limit is the page's size: it reads and returns that
/// many records, and the next page continues after them.
pub async fn a_budget_under_the_limit_bounds_an_unfiltered_page(f: &Fixture) {
    let (store, schema) = filled(f).await;
    let first = store
        .scan(&schema, &Scan::new().limit(100).read_budget(10))
        .await
        .expect("scan");
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.read, 10);
    let pages = scan_pages(store, &schema, &Scan::new().limit(100).read_budget(10)).await;
    assert_eq!(once_each(&pages, "scan"), (0..RECORDS).collect::<Vec<_>>());
    let query = Query::table("p1").limit(100).read_budget(20);
    let pages = query_pages(store, &schema, &query).await;
    let numbers = numbers_of(&pages);
    assert_eq!(numbers, (0..50).map(|i| 1 + 10 * i).collect::<Vec<_>>());
    assert_eq!(pages[0].items.len(), 20);
    assert_eq!(pages[0].read, 20);
}

/// A read budget of 0 or above [`MAX_READ_BUDGET`] and a scan limit out of range are
/// `InvalidInput` on queries and scans, before any database is asked; a filter on a path no
/// document can hold is too.
pub async fn bad_read_budgets_and_scans_are_invalid_input(f: &Fixture) {
    let (store, schema) = filled(f).await;
    for budget in [0, MAX_READ_BUDGET + 1, u64::MAX] {
        let scan = store
            .scan(&schema, &Scan::new().filter(hit()).read_budget(budget))
            .await;
        assert!(refused(&scan, "read budget"), "scan, {budget}: {scan:?}");
        let query = store
            .query(&schema, &Query::table("p1").read_budget(budget))
            .await;
        assert!(refused(&query, "read budget"), "query, {budget}: {query:?}");
    }
    let largest = store
        .scan(&schema, &Scan::new().limit(3).read_budget(MAX_READ_BUDGET))
        .await
        .expect("the largest budget");
    assert_eq!(largest.items.len(), 3);
    for limit in [0, storekit_core::table::MAX_PAGE + 1] {
        let scan = store.scan(&schema, &Scan::new().limit(limit)).await;
        assert!(refused(&scan, "limit"), "limit {limit}: {scan:?}");
    }
    let garbled = store
        .scan(&schema, &Scan::new().after("not a cursor"))
        .await;
    assert!(refused(&garbled, "cursor"), "{garbled:?}");
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Row {
    p: String,
    n: i64,
    hit: bool,
    kind: String,
}

/// A typed table and the scan stream take a [`Scan`] too: filtered, page after page, every
/// match once.
pub async fn typed_scans_and_streams_filter(f: &Fixture) {
    let (_, schema) = filled(f).await;
    let table: Table<Row> = Table::new(f.tables().clone(), schema.clone());
    let page = table
        .scan(Scan::new().filter(hit()).limit(4))
        .await
        .expect("typed scan");
    assert_eq!(page.items.len(), 4);
    assert!(page.items.iter().all(|row| row.record.hit));
    assert!(page.read >= 4);
    let all: Vec<_> = table
        .scan_all(
            Scan::new()
                .filter(hit())
                .filter(Condition::eq("kind", "odd"))
                .limit(3),
        )
        .try_collect()
        .await
        .expect("typed stream");
    let mut numbers: Vec<i64> = all.iter().map(|row| row.record.n).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..RECORDS).filter(|n| n % 50 == 7).collect::<Vec<_>>()
    );
    let budgeted: Vec<Record> = scan_stream(
        f.tables().clone(),
        schema,
        Scan::new().filter(hit()).read_budget(25),
    )
    .try_collect()
    .await
    .expect("stream");
    assert_eq!(budgeted.len(), 10);
}
