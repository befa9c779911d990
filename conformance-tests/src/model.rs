//! A model-based differential test: random sequences of user, OAuth and key-value operations
//! (invalid input, duplicates, expired TTLs, other letter cases and Unicode forms of emails
//! included) run against the store and against a plain model written here, and every answer
//! and the final state must agree. A divergence fails with the shrunk sequence and the seed
//! (set `STOREKIT_MODEL_SEED` to replay it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use storekit_core::{Error, NewOAuthAccount, NewUser, UserId, UserPatch, normalize_email};

use crate::Fixture;

/// Sequences per backend, and the longest sequence.
pub const SEQUENCES: u32 = 24;
const MAX_OPS: usize = 40;
const KEYS: u8 = 4;
const EMAILS: u8 = 4;
const ACCOUNTS: u8 = 3;
/// Users are named by their place among the users a sequence created.
const USERS: u8 = 4;

#[derive(Debug, Clone, Copy)]
enum Form {
    AsTyped,
    Upper,
    /// Accented letters as a base letter and a combining mark (Unicode NFD).
    Decomposed,
}

#[derive(Debug, Clone)]
enum Op {
    CreateUser {
        email: u8,
        form: Form,
    },
    CreateUserWithNulHash,
    FindUser {
        email: u8,
        form: Form,
    },
    ChangeEmail {
        user: u8,
        email: u8,
        form: Form,
    },
    DeleteUser {
        user: u8,
    },
    Link {
        user: u8,
        account: u8,
    },
    Unlink {
        user: u8,
        account: u8,
    },
    Set {
        key: u8,
        value: u8,
        expired: bool,
    },
    SetEmptyKey,
    Get {
        key: u8,
    },
    Delete {
        key: u8,
    },
    SetIfAbsent {
        key: u8,
        value: u8,
    },
    Increment {
        key: u8,
        delta: i8,
    },
    Swap {
        key: u8,
        expected: Option<u8>,
        new: u8,
    },
}

/// An answer, in a form both sides can give.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Done,
    Flag(bool),
    Value(Option<Vec<u8>>),
    Number(i64),
    /// A user, by its place among the users the sequence created.
    User(Option<usize>),
    Refused(String),
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::AsTyped),
        Just(Form::Upper),
        Just(Form::Decomposed)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..EMAILS, form()).prop_map(|(email, form)| Op::CreateUser { email, form }),
        1 => Just(Op::CreateUserWithNulHash),
        2 => (0..EMAILS, form()).prop_map(|(email, form)| Op::FindUser { email, form }),
        2 => (0..USERS, 0..EMAILS, form())
            .prop_map(|(user, email, form)| Op::ChangeEmail { user, email, form }),
        1 => (0..USERS).prop_map(|user| Op::DeleteUser { user }),
        2 => (0..USERS, 0..ACCOUNTS).prop_map(|(user, account)| Op::Link { user, account }),
        1 => (0..USERS, 0..ACCOUNTS).prop_map(|(user, account)| Op::Unlink { user, account }),
        3 => (0..KEYS, any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(key, value, expired)| Op::Set { key, value, expired }),
        1 => Just(Op::SetEmptyKey),
        2 => (0..KEYS).prop_map(|key| Op::Get { key }),
        1 => (0..KEYS).prop_map(|key| Op::Delete { key }),
        1 => (0..KEYS, any::<u8>()).prop_map(|(key, value)| Op::SetIfAbsent { key, value }),
        2 => (0..KEYS, -3i8..4).prop_map(|(key, delta)| Op::Increment { key, delta }),
        2 => (0..KEYS, prop::option::of(any::<u8>()), any::<u8>())
            .prop_map(|(key, expected, new)| Op::Swap { key, expected, new }),
    ]
}

/// The email of index `email`, unique to sequence `seq`, in `form`.
fn email(seq: usize, email: u8, form: Form) -> String {
    let typed = match email {
        0 => format!("ada.{seq}@example.com"),
        1 => format!("élodie.{seq}@exämple.com"),
        2 => format!("straße.{seq}@example.com"),
        _ => format!("ÖMER.{seq}@Example.com"),
    };
    match form {
        Form::AsTyped => typed,
        Form::Upper => typed.to_uppercase(),
        Form::Decomposed => typed
            .replace('é', "e\u{301}")
            .replace('ä', "a\u{308}")
            .replace('Ö', "O\u{308}"),
    }
}

fn account_id(seq: usize, account: u8) -> String {
    format!("acct{account}.{seq}")
}

fn key(key: u8) -> String {
    format!("k{key}")
}

/// Small values are counters (decimal text), others are not.
fn value(value: u8) -> Vec<u8> {
    if value < 128 {
        value.to_string().into_bytes()
    } else {
        format!("v{value}").into_bytes()
    }
}

fn refused(err: &Error) -> Outcome {
    Outcome::Refused(match err {
        Error::NotFound { what } => format!("NotFound({what})"),
        Error::AlreadyExists { what } => format!("AlreadyExists({what})"),
        Error::InvalidInput { what, .. } => format!("InvalidInput({what})"),
        Error::ValueTooLarge { what, .. } => format!("ValueTooLarge({what})"),
        Error::Conflict { what, .. } => format!("Conflict({what})"),
        other => format!("unexpected: {other:?}"),
    })
}

fn refusal(kind: &str, what: &str) -> Outcome {
    Outcome::Refused(format!("{kind}({what})"))
}

/// The plain model: what the store should hold and answer.
#[derive(Default)]
struct Model {
    /// Every created user (by place), with its email key while it exists.
    users: Vec<Option<String>>,
    /// OAuth account -> the place of the user it is linked to.
    accounts: BTreeMap<u8, usize>,
    kv: BTreeMap<u8, Vec<u8>>,
}

impl Model {
    fn owner_of(&self, key: &str) -> Option<usize> {
        self.users.iter().position(|k| k.as_deref() == Some(key))
    }

    fn live(&self, user: usize) -> bool {
        self.users.get(user).is_some_and(Option::is_some)
    }

    fn apply(&mut self, seq: usize, op: &Op) -> Outcome {
        match *op {
            Op::CreateUser { email: e, form } => {
                let key = normalize_email(&email(seq, e, form)).expect("a valid email");
                if self.owner_of(&key).is_some() {
                    return refusal("AlreadyExists", "email");
                }
                self.users.push(Some(key));
                Outcome::User(Some(self.users.len() - 1))
            }
            Op::CreateUserWithNulHash => refusal("InvalidInput", "hashed_password"),
            Op::FindUser { email: e, form } => {
                let key = normalize_email(&email(seq, e, form)).expect("a valid email");
                Outcome::User(self.owner_of(&key))
            }
            Op::ChangeEmail {
                user,
                email: e,
                form,
            } => {
                let user = usize::from(user);
                if !self.live(user) {
                    return refusal("NotFound", "user");
                }
                let key = normalize_email(&email(seq, e, form)).expect("a valid email");
                match self.owner_of(&key) {
                    Some(owner) if owner != user => refusal("AlreadyExists", "email"),
                    _ => {
                        self.users[user] = Some(key);
                        Outcome::Done
                    }
                }
            }
            Op::DeleteUser { user } => {
                let user = usize::from(user);
                if !self.live(user) {
                    return refusal("NotFound", "user");
                }
                self.users[user] = None;
                self.accounts.retain(|_, owner| *owner != user);
                Outcome::Done
            }
            Op::Link { user, account } => {
                let user = usize::from(user);
                if !self.live(user) {
                    return refusal("NotFound", "user");
                }
                if self.accounts.contains_key(&account) {
                    return refusal("AlreadyExists", "oauth account");
                }
                self.accounts.insert(account, user);
                Outcome::Done
            }
            Op::Unlink { user, account } => {
                if self.accounts.get(&account) == Some(&usize::from(user)) {
                    self.accounts.remove(&account);
                    Outcome::Done
                } else {
                    refusal("NotFound", "oauth account")
                }
            }
            Op::Set {
                key,
                value: v,
                expired,
            } => {
                if expired {
                    self.kv.remove(&key);
                } else {
                    self.kv.insert(key, value(v));
                }
                Outcome::Done
            }
            Op::SetEmptyKey => refusal("InvalidInput", "key"),
            Op::Get { key } => Outcome::Value(self.kv.get(&key).cloned()),
            Op::Delete { key } => Outcome::Flag(self.kv.remove(&key).is_some()),
            Op::SetIfAbsent { key, value: v } => {
                if self.kv.contains_key(&key) {
                    return Outcome::Flag(false);
                }
                self.kv.insert(key, value(v));
                Outcome::Flag(true)
            }
            Op::Increment { key, delta } => {
                let current = match self.kv.get(&key) {
                    None => 0,
                    Some(stored) => match storekit_core::kv::counter::parse(stored) {
                        Ok(n) => n,
                        Err(err) => return refused(&err),
                    },
                };
                let next = current + i64::from(delta);
                self.kv.insert(key, next.to_string().into_bytes());
                Outcome::Number(next)
            }
            Op::Swap { key, expected, new } => {
                if self.kv.get(&key) != expected.map(value).as_ref() {
                    return Outcome::Flag(false);
                }
                self.kv.insert(key, value(new));
                Outcome::Flag(true)
            }
        }
    }
}

/// The store's side of a sequence: the ids of the users it created, by place.
struct Real<'f> {
    f: &'f Fixture,
    seq: usize,
    namespace: String,
    users: Vec<UserId>,
}

impl Real<'_> {
    fn place(&self, id: UserId) -> Outcome {
        Outcome::User(Some(
            self.users
                .iter()
                .position(|known| *known == id)
                .unwrap_or(usize::MAX),
        ))
    }

    async fn apply(&mut self, op: &Op) -> Outcome {
        let (auth, kv, ns, seq) = (&self.f.auth, &self.f.kv, self.namespace.as_str(), self.seq);
        let answer = |result: Result<Outcome, Error>| result.unwrap_or_else(|err| refused(&err));
        match *op {
            Op::CreateUser { email: e, form } => {
                match auth
                    .create_user(NewUser::new(email(seq, e, form), "hash"))
                    .await
                {
                    Ok(user) => {
                        self.users.push(user.id);
                        self.place(user.id)
                    }
                    Err(err) => refused(&err),
                }
            }
            Op::CreateUserWithNulHash => {
                let user = NewUser::new(format!("nul.{seq}@example.com"), "ha\0sh");
                answer(auth.create_user(user).await.map(|_| Outcome::Done))
            }
            Op::FindUser { email: e, form } => {
                match auth.get_user_by_email(&email(seq, e, form)).await {
                    Ok(Some(user)) => self.place(user.id),
                    Ok(None) => Outcome::User(None),
                    Err(err) => refused(&err),
                }
            }
            Op::ChangeEmail {
                user,
                email: e,
                form,
            } => {
                let id = self.users[usize::from(user)];
                let patch = UserPatch::new().email(email(seq, e, form));
                answer(auth.update_user(id, patch).await.map(|_| Outcome::Done))
            }
            Op::DeleteUser { user } => {
                let id = self.users[usize::from(user)];
                answer(auth.delete_user(id).await.map(|()| Outcome::Done))
            }
            Op::Link { user, account } => {
                let id = self.users[usize::from(user)];
                let link = NewOAuthAccount::new(
                    "github",
                    account_id(seq, account),
                    "linked@example.com",
                    "token",
                );
                answer(
                    auth.add_oauth_account(id, link)
                        .await
                        .map(|_| Outcome::Done),
                )
            }
            Op::Unlink { user, account } => {
                let id = self.users[usize::from(user)];
                let removed = auth
                    .remove_oauth_account(id, "github", &account_id(seq, account))
                    .await;
                answer(removed.map(|()| Outcome::Done))
            }
            Op::Set {
                key: k,
                value: v,
                expired,
            } => {
                let ttl = expired.then_some(Duration::from_millis(1));
                let set = kv.set(ns, &key(k), &value(v), ttl).await;
                if expired {
                    // Past the deadline before the next operation reads it.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                answer(set.map(|()| Outcome::Done))
            }
            Op::SetEmptyKey => answer(kv.set(ns, "", b"v", None).await.map(|()| Outcome::Done)),
            Op::Get { key: k } => answer(kv.get(ns, &key(k)).await.map(Outcome::Value)),
            Op::Delete { key: k } => answer(kv.delete(ns, &key(k)).await.map(Outcome::Flag)),
            Op::SetIfAbsent { key: k, value: v } => answer(
                kv.set_if_absent(ns, &key(k), &value(v), None)
                    .await
                    .map(Outcome::Flag),
            ),
            Op::Increment { key: k, delta } => answer(
                kv.increment(ns, &key(k), i64::from(delta), None)
                    .await
                    .map(Outcome::Number),
            ),
            Op::Swap {
                key: k,
                expected,
                new,
            } => {
                let expected = expected.map(value);
                answer(
                    kv.compare_and_swap(ns, &key(k), expected.as_deref(), &value(new), None)
                        .await
                        .map(Outcome::Flag),
                )
            }
        }
    }
}

/// True if `op` names a user the sequence has not created (skipped on both sides).
fn names_missing_user(op: &Op, created: usize) -> bool {
    match *op {
        Op::ChangeEmail { user, .. }
        | Op::DeleteUser { user }
        | Op::Link { user, .. }
        | Op::Unlink { user, .. } => usize::from(user) >= created,
        _ => false,
    }
}

async fn run_sequence(f: &Fixture, seq: usize, ops: &[Op]) -> Result<(), String> {
    let mut model = Model::default();
    let mut real = Real {
        f,
        seq,
        namespace: format!("model{seq}"),
        users: Vec::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        if names_missing_user(op, model.users.len()) {
            continue;
        }
        let expected = model.apply(seq, op);
        let got = real.apply(op).await;
        if got != expected {
            return Err(format!(
                "operation {i} ({op:?}): the store answered {got:?}, the model {expected:?}"
            ));
        }
    }
    // The final state, read back in full.
    for k in 0..KEYS {
        let stored =
            f.kv.get(&real.namespace, &key(k))
                .await
                .map_err(|e| e.to_string())?;
        if stored.as_ref() != model.kv.get(&k) {
            return Err(format!(
                "key {k}: the store holds {stored:?}, the model {:?}",
                model.kv.get(&k)
            ));
        }
    }
    for (place, id) in real.users.iter().enumerate() {
        let user = f.auth.get_user(*id).await.map_err(|e| e.to_string())?;
        let key = user
            .map(|u| u.email_key())
            .transpose()
            .map_err(|e| e.to_string())?;
        if key != model.users[place] {
            return Err(format!(
                "user {place}: the store has {key:?}, the model {:?}",
                model.users[place]
            ));
        }
        let linked: BTreeSet<String> = f
            .auth
            .oauth_accounts(*id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|a| a.account_id)
            .collect();
        let expected: BTreeSet<String> = model
            .accounts
            .iter()
            .filter(|(_, owner)| **owner == place)
            .map(|(account, _)| account_id(seq, *account))
            .collect();
        if linked != expected {
            return Err(format!(
                "user {place}: accounts {linked:?}, the model {expected:?}"
            ));
        }
    }
    Ok(())
}

/// [`SEQUENCES`] random sequences of up to 40 operations each, store against model.
pub async fn random_sequences_agree_with_a_plain_model(f: &Fixture) {
    let seed: u64 = std::env::var("STOREKIT_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| getrandom::u64().unwrap_or(7));
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: SEQUENCES,
        failure_persistence: None,
        max_shrink_iters: 500,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let sequences = AtomicUsize::new(0);
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&prop::collection::vec(op(), 1..MAX_OPS), |ops| {
            let seq = sequences.fetch_add(1, Ordering::Relaxed);
            runtime
                .block_on(run_sequence(f, seq, &ops))
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(failure) = outcome {
        panic!("STOREKIT_MODEL_SEED={seed}: {failure}");
    }
}
