//! The workloads: sequences of measured operations where each phase works on what the phase
//! before it left (a get reads the keys the set wrote, a delete removes them).
//!
//! Every phase runs for at most `--ops` calls or the time window, so the data each phase sees
//! is what the previous phase managed to write; a miss where a hit was due counts as an error.

use std::sync::{Arc, OnceLock};

use storekit::uuid::Builder;
use storekit::{BoxError, UserPatch};

use crate::measure::{Op, Runner, Sample, expect};
use crate::targets::{Kv, Product, Products, Storekit, TOKEN_MAX_AGE, Users};

/// The size of every value written.
pub(crate) const VALUE_SIZE: usize = 1024;

/// The most full listings of a namespace in one measurement (each reads every key).
const LISTINGS: usize = 20;

struct KvCtx<K> {
    store: Arc<K>,
    namespace: String,
    value: Vec<u8>,
    batch: usize,
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

fn point(workload: &'static str, name: &'static str) -> Op {
    Op {
        workload,
        name,
        batch: 1,
    }
}

/// set, get, contains (hit and miss), list, delete, then set_many and delete_many of
/// `batch` items per call; each mode in its own namespace.
pub(crate) async fn kv<K: Kv + 'static>(
    runner: &Runner,
    store: Arc<K>,
    batch: usize,
) -> Vec<Sample> {
    let ctx = Arc::new(KvCtx {
        store,
        namespace: format!("bench-{}", runner.mode.label()),
        value: vec![0xAB; VALUE_SIZE],
        batch,
    });
    let all = runner.limits.max_ops;
    let mut samples = Vec::new();

    let set = runner
        .run(point("kv", "set"), &ctx, all, |c, i| async move {
            c.store.set(&c.namespace, &key(i), &c.value).await?;
            Ok(1)
        })
        .await;
    let (written, stored) = (set.calls.max(1), set.items);
    samples.push(set);

    samples.push(
        runner
            .run(point("kv", "get"), &ctx, all, move |c, i| async move {
                let found = c.store.get(&c.namespace, &key(i % written)).await?;
                expect(found, "get missed a key that was set")?;
                Ok(1)
            })
            .await,
    );
    samples.push(
        runner
            .run(
                point("kv", "contains_hit"),
                &ctx,
                all,
                move |c, i| async move {
                    let found = c.store.contains(&c.namespace, &key(i % written)).await?;
                    expect(found, "contains missed a key that was set")?;
                    Ok(1)
                },
            )
            .await,
    );
    samples.push(
        runner
            .run(point("kv", "contains_miss"), &ctx, all, |c, i| async move {
                let found = c
                    .store
                    .contains(&c.namespace, &format!("absent-{i}"))
                    .await?;
                expect(!found, "contains found a key that was never set")?;
                Ok(1)
            })
            .await,
    );

    // Listing counts keys per second; the namespace holds what the set phase stored.
    let list = Op {
        workload: "kv",
        name: "list",
        batch: usize::try_from(stored).unwrap_or(usize::MAX),
    };
    samples.push(
        runner
            .run(list, &ctx, LISTINGS, move |c, _| async move {
                let listed = c.store.count_keys(&c.namespace).await?;
                expect(
                    listed == stored,
                    "the listing missed keys or found extra ones",
                )?;
                Ok(listed)
            })
            .await,
    );

    samples.push(
        runner
            .run(point("kv", "delete"), &ctx, written, |c, i| async move {
                let found = c.store.delete(&c.namespace, &key(i)).await?;
                expect(found, "delete found nothing to delete")?;
                Ok(1)
            })
            .await,
    );

    let many = |name| Op {
        workload: "kv",
        name,
        batch,
    };
    let set_many = runner
        .run(
            many("set_many"),
            &ctx,
            all / batch.max(1),
            |c, call| async move {
                let keys = batch_keys(call, c.batch);
                let items: Vec<(&str, &[u8])> =
                    keys.iter().map(|k| (k.as_str(), &c.value[..])).collect();
                c.store.set_many(&c.namespace, &items).await?;
                Ok(items.len() as u64)
            },
        )
        .await;
    let calls = set_many.calls;
    samples.push(set_many);
    samples.push(
        runner
            .run(many("delete_many"), &ctx, calls, |c, call| async move {
                let keys = batch_keys(call, c.batch);
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                c.store.delete_many(&c.namespace, &keys).await?;
                Ok(keys.len() as u64)
            })
            .await,
    );
    samples
}

fn batch_keys(call: usize, batch: usize) -> Vec<String> {
    (0..batch).map(|j| format!("bulk-{call}-{j}")).collect()
}

/// Users created by the `create` phase, by call index, for the phases after it.
struct UserCtx<U: Users> {
    store: Arc<U>,
    mode: String,
    ids: Vec<OnceLock<U::Id>>,
    tokens: Vec<OnceLock<String>>,
}

impl<U: Users> UserCtx<U> {
    fn id(&self, i: usize) -> Result<&U::Id, BoxError> {
        self.ids[i]
            .get()
            .ok_or_else(|| "no user was created at this index".into())
    }

    fn email(&self, i: usize) -> String {
        format!("user-{}-{i}@bench.example", self.mode)
    }
}

/// The user operations both peers have: create, then get by id. Returns the created users
/// and how many create calls were made.
async fn create_and_get<U: Users + 'static>(
    runner: &Runner,
    store: Arc<U>,
) -> (Vec<Sample>, Arc<UserCtx<U>>, usize) {
    let all = runner.limits.max_ops;
    let ctx = Arc::new(UserCtx {
        store,
        mode: runner.mode.label(),
        ids: (0..all).map(|_| OnceLock::new()).collect(),
        tokens: (0..all).map(|_| OnceLock::new()).collect(),
    });
    let create = runner
        .run(point("users", "create"), &ctx, all, |c, i| async move {
            let id = c.store.create_user(&c.email(i)).await?;
            // Each index is created once, so the cell is always empty here.
            let _ = c.ids[i].set(id);
            Ok(1)
        })
        .await;
    let created = create.calls.max(1);
    let get = runner
        .run(point("users", "get"), &ctx, all, move |c, i| async move {
            let found = c.store.get_user(c.id(i % created)?).await?;
            expect(found, "get_user missed a user that was created")?;
            Ok(1)
        })
        .await;
    (vec![create, get], ctx, created)
}

/// The raw baseline's user operations.
pub(crate) async fn raw_users<U: Users + 'static>(runner: &Runner, store: Arc<U>) -> Vec<Sample> {
    create_and_get(runner, store).await.0
}

/// storekit's user and token operations: create, get, get by email in another letter case,
/// update, the token phases on those users, and finally delete.
pub(crate) async fn storekit_users(runner: &Runner, store: Arc<Storekit>) -> Vec<Sample> {
    let all = runner.limits.max_ops;
    let (mut samples, ctx, created) = create_and_get(runner, store).await;
    samples.push(
        runner
            .run(
                point("users", "get_by_email"),
                &ctx,
                all,
                move |c, i| async move {
                    let email = c.email(i % created).to_uppercase();
                    let found = c.store.auth.get_user_by_email(&email).await?;
                    expect(found.is_some(), "get_user_by_email missed a user")?;
                    Ok(1)
                },
            )
            .await,
    );
    samples.push(
        runner
            .run(
                point("users", "update"),
                &ctx,
                all,
                move |c, i| async move {
                    let patch = UserPatch::new().verified(i % 2 == 0);
                    c.store.auth.update_user(*c.id(i % created)?, patch).await?;
                    Ok(1)
                },
            )
            .await,
    );
    let tokens = token_phases(runner, &ctx, created).await;
    samples.push(
        runner
            .run(point("users", "delete"), &ctx, created, |c, i| async move {
                c.store.auth.delete_user(*c.id(i)?).await?;
                Ok(1)
            })
            .await,
    );
    samples.extend(tokens);
    samples
}

async fn token_phases(runner: &Runner, ctx: &Arc<UserCtx<Storekit>>, users: usize) -> Vec<Sample> {
    let all = runner.limits.max_ops;
    let create = runner
        .run(
            point("tokens", "create"),
            ctx,
            all,
            move |c, i| async move {
                let issued = c.store.auth.create_access_token(*c.id(i % users)?).await?;
                let _ = c.tokens[i].set(issued.token);
                Ok(1)
            },
        )
        .await;
    let issued = create.calls.max(1);
    let token = |c: &UserCtx<Storekit>, i: usize| -> Result<String, BoxError> {
        c.tokens[i]
            .get()
            .cloned()
            .ok_or_else(|| "no token was issued at this index".into())
    };
    let get = runner
        .run(point("tokens", "get"), ctx, all, move |c, i| async move {
            let token = token(&c, i % issued)?;
            let found = c
                .store
                .auth
                .get_access_token(&token, Some(TOKEN_MAX_AGE))
                .await?;
            expect(found.is_some(), "get_access_token missed a token")?;
            Ok(1)
        })
        .await;
    let delete = runner
        .run(
            point("tokens", "delete"),
            ctx,
            issued,
            move |c, i| async move {
                let deleted = c.store.auth.delete_access_token(&token(&c, i)?).await?;
                expect(deleted, "delete_access_token found nothing")?;
                Ok(1)
            },
        )
        .await;
    vec![create, get, delete]
}

/// Distinct product names: each name's partition of the index holds many products.
const PRODUCT_NAMES: usize = 50;
/// Products in one page of `index_query`.
pub(crate) const PRODUCT_PAGE: usize = 20;
/// The catalogue's descriptions are a couple of hundred bytes.
const DESCRIPTION: &str = "A sturdy everyday product for home and office, made of recycled \
materials, with a two-year warranty. Ships flat-packed in plastic-free packaging; assembly \
takes about ten minutes and needs no tools. Spare parts ship on request.";

/// Products inserted by the `insert` phase, by call index, for the phases after it.
struct ProductCtx<P> {
    store: Arc<P>,
    ids: Vec<String>,
}

impl<P> ProductCtx<P> {
    fn product(&self, i: usize) -> Product {
        Product {
            id: self.ids[i].clone(),
            name: product_name(i % PRODUCT_NAMES),
            price_cents: 1000 + i as u64,
            updated_at: stamp(i),
            description: DESCRIPTION.to_owned(),
        }
    }
}

/// A version-4 UUID, as the catalogue's ids are: random ones spread the inserts over the
/// key's B-tree, as in production. Drawn from the index, so both peers write the same ids.
fn product_id(i: usize) -> String {
    let mix = |z: u64| {
        let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let high = mix((i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15));
    let low = mix(high);
    let bytes = ((u128::from(high) << 64) | u128::from(low)).to_be_bytes();
    Builder::from_random_bytes(bytes).into_uuid().to_string()
}

fn product_name(n: usize) -> String {
    format!("product-{n:02}")
}

/// A time in seconds, later for a larger `tick`, and never a whole number: storekit stores a
/// float with an integral value as an integer, as DynamoDB does, and the bench keeps to the
/// float case the catalogue has.
/// The price the patch phase gives every other product, which the filtered query leaves out.
const CHEAP: u64 = 500;

fn stamp(tick: usize) -> f64 {
    1_700_000_000.0 + tick as f64 / 1000.0 + 0.0005
}

/// On a fresh products table: insert (create-only), get by id, update (read, change price and
/// time, write at the version read), then one page of the newest products of one name; the
/// table is dropped afterwards.
pub(crate) async fn tables<P: Products + 'static>(
    runner: &Runner,
    store: Arc<P>,
) -> Result<Vec<Sample>, BoxError> {
    let all = runner.limits.max_ops;
    store
        .create_products()
        .await
        .inspect_err(|_| eprintln!("bench: {} tables: creating the table failed", runner.peer))?;
    let ctx = Arc::new(ProductCtx {
        store,
        ids: (0..all).map(product_id).collect(),
    });
    let insert = runner
        .run(point("tables", "insert"), &ctx, all, |c, i| async move {
            c.store.insert_product(&c.product(i)).await?;
            Ok(1)
        })
        .await;
    let inserted = insert.calls.max(1);
    let get = runner
        .run(point("tables", "get"), &ctx, all, move |c, i| async move {
            let id = &c.ids[i % inserted];
            let found = c.store.get_product(id).await?;
            expect(
                found.is_some_and(|p| p.id == *id),
                "get missed a product that was inserted",
            )?;
            Ok(1)
        })
        .await;
    // Every update moves its product to the front of its name's listing.
    let update = runner
        .run(
            point("tables", "update"),
            &ctx,
            all,
            move |c, i| async move {
                let id = &c.ids[i % inserted];
                let price = 2000 + i as u64;
                c.store
                    .update_product(id, price, stamp(inserted + i))
                    .await?;
                Ok(1)
            },
        )
        .await;
    let names = inserted.min(PRODUCT_NAMES);
    let index_query = runner
        .run(
            point("tables", "index_query"),
            &ctx,
            all,
            move |c, i| async move {
                let n = i % names;
                // Products n, n + 50, n + 100, … of the insert phase bear name n.
                let named = (inserted - n).div_ceil(PRODUCT_NAMES);
                let name = product_name(n);
                let (page, more) = c.store.newest_products(&name, PRODUCT_PAGE).await?;
                expect(
                    page.len() == named.min(PRODUCT_PAGE) && more == (named > PRODUCT_PAGE),
                    "a page of one name missed products or found extra ones",
                )?;
                expect(
                    page.iter().all(|p| p.name == name)
                        && page.windows(2).all(|w| w[0].updated_at >= w[1].updated_at),
                    "a page of one name is not that name's products, newest first",
                )?;
                Ok(1)
            },
        )
        .await;
    // One request that sets two fields, without a read: half the products become cheap.
    let patch = runner
        .run(
            point("tables", "patch"),
            &ctx,
            all,
            move |c, i| async move {
                let id = &c.ids[i % inserted];
                let price = if i % 2 == 0 { CHEAP } else { 5000 };
                c.store
                    .patch_product(id, price, stamp(inserted + all + i))
                    .await?;
                Ok(1)
            },
        )
        .await;
    // A name's newest products that are not cheap: the database filters, the page stays full.
    let filtered_query = runner
        .run(
            point("tables", "filtered_query"),
            &ctx,
            all,
            move |c, i| async move {
                let name = product_name(i % names);
                let (page, _more) = c
                    .store
                    .newest_products_from(&name, CHEAP + 1, PRODUCT_PAGE)
                    .await?;
                expect(
                    page.iter().all(|p| p.name == name && p.price_cents > CHEAP)
                        && page.windows(2).all(|w| w[0].updated_at >= w[1].updated_at),
                    "a filtered page holds products it should have left out, or is out of order",
                )?;
                Ok(1)
            },
        )
        .await;
    ctx.store
        .drop_products()
        .await
        .inspect_err(|_| eprintln!("bench: {} tables: dropping the table failed", runner.peer))?;
    Ok(vec![
        insert,
        get,
        update,
        index_query,
        patch,
        filtered_query,
    ])
}
