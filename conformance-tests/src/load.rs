//! Load on few keys: 32 tasks mixing every kind of write on the same handful of keys and
//! emails. No error but the documented refusals, and a final state that accounts for every
//! write that reported success.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use storekit_core::kv::counter;
use storekit_core::{Error, NewUser, UserId, UserPatch};

use crate::Fixture;

const TASKS: usize = 32;
const OPS_PER_TASK: usize = 30;
const COUNTERS: usize = 3;
const BATCH_KEYS: usize = 6;
const EMAILS: usize = 6;
const NS: &str = "load";

/// A small deterministic generator, so a failing run can be repeated exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the tasks did that the final state must show.
#[derive(Default)]
struct Tally {
    increments: [AtomicI64; COUNTERS],
    swaps: AtomicI64,
}

/// A stored counter's value, 0 when absent.
fn count(stored: Option<&[u8]>) -> i64 {
    stored.map_or(0, |v| counter::parse(v).expect("a counter"))
}

fn email(i: usize) -> String {
    format!("load{i}@example.com")
}

fn counter(i: usize) -> String {
    format!("counter-{i}")
}

fn batch_key(i: usize) -> String {
    format!("batch-{i}")
}

/// 32 tasks × 30 operations, drawn at random from: increments of 3 counters, compare-and-swap
/// on one key used as a counter, `set_many` and `delete_many` of overlapping subsets of 6 keys
/// in random order, creates of 6 emails, and email changes between them.
pub async fn mixed_writers_on_few_keys_account_for_every_success(f: &Fixture) {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let (kv, auth, tally) = (f.kv.clone(), f.auth.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1));
            let mut created = Vec::new();
            for op in 0..OPS_PER_TASK {
                match rng.below(6) {
                    0 => {
                        let c = rng.below(COUNTERS);
                        kv.increment(NS, &counter(c), 1, None)
                            .await
                            .expect("increment");
                        tally.increments[c].fetch_add(1, Ordering::Relaxed);
                    }
                    1 => {
                        let current = kv.get(NS, "swapped").await.expect("get");
                        let seen = count(current.as_deref());
                        let next = (seen + 1).to_string();
                        if kv
                            .compare_and_swap(
                                NS,
                                "swapped",
                                current.as_deref(),
                                next.as_bytes(),
                                None,
                            )
                            .await
                            .expect("compare_and_swap")
                        {
                            tally.swaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    2 => {
                        let keys: Vec<String> = (0..1 + rng.below(BATCH_KEYS))
                            .map(|_| batch_key(rng.below(BATCH_KEYS)))
                            .collect();
                        let value = format!("t{task}-op{op}");
                        let items: Vec<(&str, &[u8])> = keys
                            .iter()
                            .map(|k| (k.as_str(), value.as_bytes()))
                            .collect();
                        kv.set_many(NS, &items, None).await.expect("set_many");
                    }
                    3 => {
                        let keys: Vec<String> = (0..1 + rng.below(BATCH_KEYS))
                            .map(|_| batch_key(rng.below(BATCH_KEYS)))
                            .collect();
                        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                        kv.delete_many(NS, &keys).await.expect("delete_many");
                    }
                    4 => match auth
                        .create_user(NewUser::new(email(rng.below(EMAILS)), "h"))
                        .await
                    {
                        Ok(user) => created.push(user.id),
                        Err(Error::AlreadyExists { what: "email" }) => {}
                        Err(other) => panic!("create_user: {other:?}"),
                    },
                    _ => {
                        let Some(&id) = created.get(rng.below(created.len().max(1))) else {
                            continue;
                        };
                        let patch = UserPatch::new().email(email(rng.below(EMAILS)));
                        match auth.update_user(id, patch).await {
                            Ok(_) | Err(Error::AlreadyExists { what: "email" }) => {}
                            Err(other) => panic!("update_user: {other:?}"),
                        }
                    }
                }
            }
            created
        }));
    }
    let mut users: Vec<UserId> = Vec::new();
    for task in tasks {
        users.extend(task.await.expect("a task panicked"));
    }

    for (c, done) in tally.increments.iter().enumerate() {
        let stored = f.kv.get(NS, &counter(c)).await.expect("get");
        let stored = count(stored.as_deref());
        assert_eq!(stored, done.load(Ordering::Relaxed), "counter {c}");
    }
    let swapped = f.kv.get(NS, "swapped").await.expect("get");
    let swapped = count(swapped.as_deref());
    assert_eq!(
        swapped,
        tally.swaps.load(Ordering::Relaxed),
        "successful swaps"
    );
    for i in 0..BATCH_KEYS {
        if let Some(value) = f.kv.get(NS, &batch_key(i)).await.expect("get") {
            let value = String::from_utf8(value).expect("utf-8");
            assert!(value.starts_with('t') && value.contains("-op"), "{value}");
        }
    }

    // Users: at most one per email, every user found under its own email, none lost.
    let mut by_email: BTreeMap<String, UserId> = BTreeMap::new();
    let mut seen = HashSet::new();
    for id in &users {
        let user = f
            .auth
            .get_user(*id)
            .await
            .expect("get")
            .expect("a created user");
        assert!(seen.insert(*id), "an id returned twice");
        let owner = by_email.insert(user.email_key().expect("email"), *id);
        assert!(owner.is_none(), "two users hold {}", user.email);
        let found = f
            .auth
            .get_user_by_email(&user.email)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(found.id, *id);
    }
    assert!(users.len() <= EMAILS);
    let emails: HashMap<String, Option<UserId>> = (0..EMAILS)
        .map(|i| (email(i), by_email.get(&email(i)).copied()))
        .collect();
    for (address, owner) in emails {
        let found = f
            .auth
            .get_user_by_email(&address)
            .await
            .expect("get")
            .map(|u| u.id);
        assert_eq!(found, owner, "{address}");
    }
}
