//! Every operation of a generic DynamoDB table helper, on any backend: declare a table with a
//! hash key, a range key and a GSI; create it and wait until it is active; put, get, check
//! existence; update two fields (`SET status, last_update`) and get the new values back; query
//! by hash key with a filter; scan the table with a filter; and query the GSI.
//!
//! ```sh
//! cargo run --example orders                                   # in memory
//! DATABASE_URL=sqlite://orders.db cargo run --example orders
//! DATABASE_URL='dynamodb://?endpoint=http://127.0.0.1:8000&region=us-east-1' \
//!     cargo run --example orders --features dynamodb
//! ```

use serde::{Deserialize, Serialize};
use storekit::futures::TryStreamExt as _;
use storekit::table::{Condition, Patch, RecordType as _, Returning, Scan, SortCondition, Table};
use storekit::{Record, Result, Stores};

/// An order, and its table `orders`: hash key `customer_id`, range key `order_id`, and the GSI
/// `status-index` on (`status`, `last_update`). The derive gives `Order::schema()`,
/// `Order::key(customer, order)`, `Order::query(customer)` and `Order::query_status_index(status)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Record)]
#[storekit(
    table = "orders",
    partition = customer_id,
    sort = order_id,
    index(name = "status-index", partition = status, sort = last_update),
)]
struct Order {
    customer_id: String,
    order_id: String,
    status: String,
    total_cents: u64,
    /// Seconds since the epoch.
    last_update: i64,
}

fn order(customer: &str, id: &str, total_cents: u64, at: i64) -> Order {
    Order {
        customer_id: customer.to_owned(),
        order_id: id.to_owned(),
        status: "placed".to_owned(),
        total_cents,
        last_update: at,
    }
}

/// The two fields the update sets, as it returns them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct StatusChange {
    status: String,
    last_update: i64,
}

/// What the walk-through found, for the tests to check.
#[derive(Debug, PartialEq)]
struct Walk {
    updated: Option<StatusChange>,
    big_orders_of_ada: Vec<String>,
    small_orders: Vec<String>,
    shipped: Vec<String>,
}

/// Runs every operation once on `stores`, printing what each did.
async fn walk(stores: &Stores) -> Result<Walk> {
    let orders: Table<Order> = Order::table(stores.tables());
    // Creates the table with its GSI and waits until both are active; a no-op next time.
    say(format!("ensure_table: {:?}", orders.ensure().await?));

    for o in [
        order("ada", "o-1", 1_500, 100),
        order("ada", "o-2", 99, 101),
        order("ada", "o-3", 25_000, 102),
        order("bob", "o-4", 700, 103),
    ] {
        orders.put(&o).await?;
    }
    let key = Order::key("ada", "o-1");
    let got = orders.get(key.clone()).await?;
    say(format!("get: {got:?}"));
    say(format!(
        "exists o-1: {}, o-9: {}",
        orders.contains(key.clone()).await?,
        { orders.contains(Order::key("ada", "o-9")).await? }
    ));

    // `SET status = :s, last_update = :t` with `ReturnValues=UPDATED_NEW`: one request
    // (`UpdateItem` on DynamoDB, `UPDATE … RETURNING` on SQL) that answers with the two fields
    // as they now are.
    let updated = orders
        .patch_returning::<StatusChange>(
            key,
            Patch::new()
                .set("status", "shipped")
                .set("last_update", 200),
            None,
            Returning::UpdatedNew,
        )
        .await?;
    say(format!("update: {updated:?}"));

    // By hash key, with a filter on a non-key attribute (`FilterExpression="total_cents >=
    // :min"` on DynamoDB, a `WHERE` on SQL): the database drops what does not match, and each
    // page is still full.
    let big_orders_of_ada: Vec<String> = orders
        .query_all(
            Order::query("ada")
                .sort(SortCondition::BeginsWith("o-".into()))
                .filter(Condition::ge("total_cents", 1_000)),
        )
        .map_ok(|o| o.record.order_id)
        .try_collect()
        .await?;
    say(format!("query ada, total >= 1000: {big_orders_of_ada:?}"));

    // Every customer's orders, with a filter (`Scan` with `FilterExpression="total_cents <
    // :max"` on DynamoDB): pages stay full, each says how many records it read to fill itself,
    // and a read budget would bound that. The order is the backend's own, so sort.
    let page = orders
        .scan(
            Scan::new()
                .filter(Condition::lt("total_cents", 1_000))
                .limit(10),
        )
        .await?;
    say(format!("scan total < 1000: {} records read", page.read));
    let mut small_orders: Vec<String> = page.items.into_iter().map(|o| o.record.order_id).collect();
    small_orders.sort();
    say(format!("scan total < 1000: {small_orders:?}"));

    // On the GSI, newest first. Verified: on DynamoDB a GSI is eventually consistent, so each
    // hit is re-read and dropped if it no longer matches. Only the ids are wanted: a
    // projection (`ProjectionExpression` on DynamoDB), read as a type of its own.
    #[derive(Deserialize)]
    struct OrderId {
        order_id: String,
    }
    let shipped: Vec<String> = orders
        .query_as::<OrderId>(
            Order::query_status_index("shipped")
                .descending()
                .verified()
                .select(["order_id"]),
        )
        .await?
        .items
        .into_iter()
        .map(|o| o.record.order_id)
        .collect();
    say(format!("query status-index, shipped: {shipped:?}"));

    Ok(Walk {
        updated: updated.record,
        big_orders_of_ada,
        small_orders,
        shipped,
    })
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "memory://".to_owned());
    let stores = storekit::connect(&url).await?;
    walk(&stores).await?;
    Ok(())
}

#[allow(clippy::print_stdout)] // The walk-through's output is the point.
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use storekit::table::Consistency;

    use super::*;

    /// Every backend this build and environment can reach (see the products example).
    fn urls() -> Vec<String> {
        let prefix = format!("orders_{:x}_", std::process::id());
        let mut urls = vec!["memory://".to_owned()];
        if cfg!(feature = "sqlite") {
            let path = std::env::temp_dir().join(format!("storekit-{prefix}.db"));
            let _ = std::fs::remove_file(&path);
            urls.push(format!("sqlite://{}", path.display()));
        }
        for (on, var) in [
            (cfg!(feature = "postgres"), "STOREKIT_POSTGRES_URL"),
            (cfg!(feature = "dynamodb"), "STOREKIT_DYNAMODB_ENDPOINT"),
        ] {
            match std::env::var(var) {
                Ok(server) if on && !server.is_empty() => urls.push(if var.contains("POSTGRES") {
                    let separator = if server.contains('?') { '&' } else { '?' };
                    format!("{server}{separator}prefix={prefix}")
                } else {
                    format!("dynamodb://?endpoint={server}&region=us-east-1&prefix={prefix}")
                }),
                _ if on && std::env::var_os("CI").is_some() => {
                    panic!(
                        "{var} is not set and CI is: run `eval \"$(scripts/services.sh up)\"` first"
                    )
                }
                _ => {}
            }
        }
        urls
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_operation_gives_the_same_answers_on_every_backend() {
        for url in urls() {
            let stores = storekit::connect(&url).await.expect("connects");
            let walk = walk(&stores).await.expect("every operation works");
            assert_eq!(
                walk,
                Walk {
                    updated: Some(StatusChange {
                        status: "shipped".to_owned(),
                        last_update: 200,
                    }),
                    big_orders_of_ada: vec!["o-1".to_owned(), "o-3".to_owned()],
                    small_orders: vec!["o-2".to_owned(), "o-4".to_owned()],
                    // The GSI may lag on DynamoDB: there, o-1 may not be listed yet.
                    shipped: match stores.tables().index_consistency() {
                        Consistency::ReadAfterWrite => vec!["o-1".to_owned()],
                        Consistency::Eventual => walk.shipped.clone(),
                    },
                },
                "on {url}"
            );
            assert!(
                walk.shipped.is_empty() || walk.shipped == ["o-1"],
                "verified: never a wrong order"
            );
            let again = walk_again(&stores).await;
            assert_eq!(
                again, 4,
                "on {url}: put is an upsert, so a second walk adds nothing"
            );
            Order::table(stores.tables()).drop().await.expect("drops");
        }
    }

    async fn walk_again(stores: &Stores) -> u64 {
        walk(stores).await.expect("a second walk works");
        Order::table(stores.tables()).count().await.expect("count")
    }
}
