//! A differential test of the tables store's writes: random sequences of patches (every
//! action, on nested paths, with and without conditions, every [`Returning`]), conditional
//! writes (`put_if`, `replace_if`, `delete_if`) and small transactions, over random documents
//! (numbers large, negative and fractional, strings, bytes, booleans, nulls, nested lists and
//! maps), run on the backend under test and on the memory backend, the reference. Every answer
//! (the value, or the error's kind and what it names) and the final records and unique values
//! must agree. A divergence shrinks to a short sequence and fails with its seed
//! (`STOREKIT_DIFF_SEED` replays it; `STOREKIT_DIFF_CASES` runs more sequences than
//! [`SEQUENCES`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use storekit_core::table::{
    Condition, Consistency, Document, KeyDef, KeyValue, Patch, Query, Record, RecordKey, Returning,
    TableSchema, TableStore, Transaction,
};
use storekit_core::{Error, MemoryStore};

use crate::Fixture;
use crate::expressions::random_condition;
use crate::tables::get;

/// Sequences per backend unless `STOREKIT_DIFF_CASES` says otherwise: about 6 seconds on
/// DynamoDB Local (500 took 20 s), less elsewhere.
pub const SEQUENCES: u32 = 150;
const MAX_OPS: usize = 12;
/// Records per sequence (sort keys 0 to `KEYS - 1` of the sequence's own partition).
const KEYS: u8 = 3;
/// Unique values per sequence.
const SKUS: u8 = 2;

/// `diffs`: partition `p`, sort `n`; the query index `by-kind` on (`kind`, `n`); `tag`, a bytes
/// key field (the index `by-tag`), so that documents hold bytes; and `sku` unique, so that
/// patches, puts and transactions move unique values.
fn schema() -> TableSchema {
    TableSchema::builder("diffs", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-kind", KeyDef::text("kind"), Some(KeyDef::int("n")))
        .index("by-tag", KeyDef::bytes("tag"), None)
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema")
}

/// `diffs_plain`: [`schema`] without the unique index, where `sku` is a plain field: the
/// table whose patches a backend may make in one statement without a read (PostgreSQL's
/// `UPDATE … RETURNING`, which a unique index rules out).
fn plain_schema() -> TableSchema {
    TableSchema::builder("diffs_plain", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-kind", KeyDef::text("kind"), Some(KeyDef::int("n")))
        .index("by-tag", KeyDef::bytes("tag"), None)
        .build()
        .expect("valid schema")
}

/// A number: small and large integers up to the ends of the 64-bit range (`add` then goes
/// past it, which every backend refuses: DynamoDB, which adds in 38 digits, through a range
/// guard on its update), and fractions. `wide` adds fractions a binary float does not hold
/// exactly and floats past 2^64, which only the field `f` holds, where `add` never goes: `add`
/// to a fraction differs in the last digit between DynamoDB's decimals and the other
/// backends' floats, as the patch docs say.
fn number(wide: bool) -> BoxedStrategy<Value> {
    let exact = prop_oneof![
        3 => (-5_i64..6).prop_map(Value::from),
        2 => prop::sample::select(vec![
            json!(i64::MAX),
            json!(i64::MIN),
            json!(i64::MIN + 3),
            json!(i64::MAX - 1),
            json!(u64::MAX),
            json!(9_007_199_254_740_993_u64),
            json!(-9_007_199_254_740_993_i64),
            json!(0.5),
            json!(-2.25),
            json!(1_024.75),
            json!(-0.125),
        ]),
    ];
    if wide {
        prop_oneof![
            4 => exact,
            1 => prop::sample::select(vec![
                json!(0.1),
                json!(-123_456.789),
                json!(1e20),
                json!(-1.5e-7),
                json!(1.1),
                json!(1e-130),
                json!(9.5e125),
            ]),
        ]
        .boxed()
    } else {
        exact.boxed()
    }
}

fn scalar(wide: bool) -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => number(wide),
        2 => prop::sample::select(vec!["", "a", "ab", "B", "é", "a😀", "zz", "a\u{ffff}", "x.y"])
            .prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

/// A value: a scalar, or lists and maps of them up to three levels deep.
fn value(wide: bool) -> impl Strategy<Value = Value> {
    scalar(wide).prop_recursive(3, 12, 3, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(vec!["x", "y", "z"]), inner, 0..3)
                .prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
        ]
    })
}

/// A document without its key: free fields, and optionally the index keys `kind` (text) and
/// `tag` (bytes) and the unique `sku` (one of the sequence's values).
#[derive(Debug, Clone)]
struct Doc {
    fields: BTreeMap<&'static str, Value>,
    kind: Option<&'static str>,
    tag: Option<Vec<u8>>,
    sku: Option<u8>,
}

impl Doc {
    fn render(&self, run: &Run, n: u8) -> Document {
        let mut document: Document = self
            .fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        document.insert("p".into(), json!(run.partition));
        document.insert("n".into(), json!(n));
        if let Some(kind) = self.kind {
            document.insert("kind".into(), json!(kind));
        }
        if let Some(tag) = &self.tag {
            document.insert("tag".into(), json!(STANDARD.encode(tag)));
        }
        if let Some(sku) = self.sku {
            document.insert("sku".into(), json!(run.sku(sku)));
        }
        document
    }
}

fn document() -> impl Strategy<Value = Doc> {
    (
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "l", "m"]),
            value(false),
            0..4,
        ),
        prop::option::of(value(true)),
        prop::option::of(prop::sample::select(vec!["k1", "k2", "é"])),
        prop::option::of(prop::collection::vec(any::<u8>(), 1..4)),
        prop::option::weighted(0.4, 0..SKUS),
    )
        .prop_map(|(mut fields, f, kind, tag, sku)| {
            if let Some(f) = f {
                fields.insert("f", f);
            }
            Doc {
                fields,
                kind,
                tag,
                sku,
            }
        })
}

/// One action of a patch, with unique values named by their place in the sequence.
#[derive(Debug, Clone)]
enum Act {
    Set(&'static str, Value),
    SetIfAbsent(&'static str, Value),
    Remove(&'static str),
    Add(&'static str, i64),
    Append(&'static str, Vec<Value>),
    SetKind(&'static str),
    SetSku(u8),
}

/// Paths into the free fields, nested ones included, and past the ends of lists.
fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "b", "l", "m", "f", "new", "l[0]", "l[1]", "l[4]", "m.x", "m.y", "m.x.y", "m.x[0]",
        "a[0]", "a.x", "l[0].x",
    ])
}

/// Paths `add` may take: never `f`, where documents hold numbers `add` rounds differently.
fn counter_path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "b", "new", "l[0]", "l[1]", "m.x", "m.y", "m.x.y", "a.x", "kind",
    ])
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (path(), value(false)).prop_map(|(p, v)| Act::Set(p, v)),
        2 => (path(), value(false)).prop_map(|(p, v)| Act::SetIfAbsent(p, v)),
        2 => path().prop_map(Act::Remove),
        3 => (
            counter_path(),
            // Big enough to leave the 64-bit range from its ends, small enough that a
            // fraction plus it is exact in binary too.
            prop_oneof![4 => -3_i64..4, 1 => prop::sample::select(vec![1 << 40, -(1 << 40)])]
        )
            .prop_map(|(p, amount)| Act::Add(p, amount)),
        2 => (path(), prop::collection::vec(value(false), 0..3))
            .prop_map(|(p, values)| Act::Append(p, values)),
        1 => prop::sample::select(vec!["k1", "k2"]).prop_map(Act::SetKind),
        1 => (0..SKUS).prop_map(Act::SetSku),
        1 => prop::sample::select(vec!["kind", "sku", "tag"]).prop_map(Act::Remove),
    ]
}

fn acts() -> impl Strategy<Value = Vec<Act>> {
    prop::collection::vec(act(), 1..4)
}

fn render_patch(run: &Run, acts: &[Act]) -> Patch {
    acts.iter().fold(Patch::new(), |patch, act| match act {
        Act::Set(p, v) => patch.set(*p, v.clone()),
        Act::SetIfAbsent(p, v) => patch.set_if_absent(*p, v.clone()),
        Act::Remove(p) => patch.remove(*p),
        Act::Add(p, amount) => patch.add(*p, *amount),
        Act::Append(p, values) => patch.append(*p, values.clone()),
        Act::SetKind(kind) => patch.set("kind", *kind),
        Act::SetSku(sku) => patch.set("sku", run.sku(*sku)),
    })
}

/// A condition of the expression language, or one of the conditions writes are most often
/// made with: on the record existing at all, or holding a unique value.
fn condition() -> impl Strategy<Value = Cond> {
    prop_oneof![
        4 => random_condition().prop_map(Cond::Plain),
        1 => Just(Cond::Plain(Condition::not_exists("p"))),
        1 => Just(Cond::Plain(Condition::exists("p"))),
        1 => (0..SKUS).prop_map(Cond::SkuIs),
        1 => Just(Cond::Plain(Condition::not_exists("sku"))),
    ]
}

#[derive(Debug, Clone)]
enum Cond {
    Plain(Condition),
    /// `sku = <the sequence's unique value i>`.
    SkuIs(u8),
}

impl Cond {
    fn render(&self, run: &Run) -> Condition {
        match self {
            Self::Plain(condition) => condition.clone(),
            Self::SkuIs(sku) => Condition::eq("sku", run.sku(*sku)),
        }
    }
}

fn returning() -> impl Strategy<Value = Returning> {
    prop::sample::select(vec![
        Returning::None,
        Returning::New,
        Returning::Old,
        Returning::UpdatedNew,
    ])
}

/// One action of a transaction.
#[derive(Debug, Clone)]
enum TxAct {
    Put(u8, Doc, Option<Cond>),
    Patch(u8, Vec<Act>, Option<Cond>),
    Delete(u8, Option<Cond>),
    Check(u8, Cond),
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Doc),
    PutIf(u8, Doc, Cond),
    ReplaceIf(u8, Doc, Cond),
    DeleteIf(u8, Cond),
    Patch(u8, Vec<Act>, Option<Cond>, Returning),
    Transact(Vec<TxAct>),
}

fn tx_act() -> impl Strategy<Value = TxAct> {
    prop_oneof![
        1 => (0..KEYS, document(), prop::option::of(condition()))
            .prop_map(|(n, d, c)| TxAct::Put(n, d, c)),
        2 => (0..KEYS, acts(), prop::option::of(condition()))
            .prop_map(|(n, a, c)| TxAct::Patch(n, a, c)),
        1 => (0..KEYS, prop::option::of(condition())).prop_map(|(n, c)| TxAct::Delete(n, c)),
        1 => (0..KEYS, condition()).prop_map(|(n, c)| TxAct::Check(n, c)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..KEYS, document()).prop_map(|(n, d)| Op::Put(n, d)),
        2 => (0..KEYS, document(), condition()).prop_map(|(n, d, c)| Op::PutIf(n, d, c)),
        2 => (0..KEYS, document(), condition()).prop_map(|(n, d, c)| Op::ReplaceIf(n, d, c)),
        1 => (0..KEYS, condition()).prop_map(|(n, c)| Op::DeleteIf(n, c)),
        5 => (0..KEYS, acts(), prop::option::of(condition()), returning())
            .prop_map(|(n, a, c, r)| Op::Patch(n, a, c, r)),
        2 => prop::collection::vec(tx_act(), 1..4).prop_map(Op::Transact),
    ]
}

/// An answer, in a form both stores give: the value, or the error's kind with what it names
/// (versions and the failed action's index included).
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Record(u64, Document),
    Patched(u64, Option<Document>),
    Deleted(bool),
    Done,
    Refused(String),
}

fn refused(error: &Error) -> String {
    match error {
        Error::NotFound { what } => format!("NotFound({what})"),
        Error::AlreadyExists { what } => format!("AlreadyExists({what})"),
        Error::Conflict {
            what,
            expected,
            actual,
        } => format!("Conflict({what}, expected {expected}, actual {actual})"),
        Error::InvalidInput { what, .. } => format!("InvalidInput({what})"),
        Error::ValueTooLarge { what, .. } => format!("ValueTooLarge({what})"),
        Error::TransactionFailed { index, source } => {
            format!("TransactionFailed({index}, {})", refused(source))
        }
        // Anything else is no answer of the contract: shown whole, it never equals the
        // reference's.
        other => format!("{other:?}"),
    }
}

fn record(result: Result<Record, Error>) -> Outcome {
    match result {
        Ok(record) => Outcome::Record(record.version, record.document),
        Err(e) => Outcome::Refused(refused(&e)),
    }
}

/// One sequence's names: its partition and its unique values, so that sequences (and the
/// reruns of a shrinking one) never meet each other's records.
struct Run {
    partition: String,
    seq: usize,
}

impl Run {
    fn sku(&self, i: u8) -> String {
        format!("sku-{}-{i}", self.seq)
    }

    fn key(&self, n: u8) -> RecordKey {
        RecordKey::with_sort(self.partition.as_str(), i64::from(n))
    }
}

async fn apply(store: &dyn TableStore, schema: &TableSchema, run: &Run, op: &Op) -> Outcome {
    match op {
        Op::Put(n, d) => record(store.put(schema, d.render(run, *n)).await),
        Op::PutIf(n, d, c) => record(
            store
                .put_if(schema, d.render(run, *n), &c.render(run))
                .await,
        ),
        Op::ReplaceIf(n, d, c) => record(
            store
                .replace_if(schema, d.render(run, *n), &c.render(run))
                .await,
        ),
        Op::DeleteIf(n, c) => match store.delete_if(schema, &run.key(*n), &c.render(run)).await {
            Ok(deleted) => Outcome::Deleted(deleted),
            Err(e) => Outcome::Refused(refused(&e)),
        },
        Op::Patch(n, acts, c, returning) => {
            let condition = c.as_ref().map(|c| c.render(run));
            let patched = store
                .patch(
                    schema,
                    &run.key(*n),
                    &render_patch(run, acts),
                    condition.as_ref(),
                    *returning,
                )
                .await;
            match patched {
                Ok(patched) => Outcome::Patched(patched.version, patched.document),
                Err(e) => Outcome::Refused(refused(&e)),
            }
        }
        Op::Transact(acts) => {
            let transaction = acts.iter().fold(Transaction::new(), |t, act| match act {
                TxAct::Put(n, d, None) => t.put(schema, d.render(run, *n)),
                TxAct::Put(n, d, Some(c)) => t.put_if(schema, d.render(run, *n), c.render(run)),
                TxAct::Patch(n, a, None) => t.patch(schema, run.key(*n), render_patch(run, a)),
                TxAct::Patch(n, a, Some(c)) => {
                    t.patch_if(schema, run.key(*n), render_patch(run, a), c.render(run))
                }
                TxAct::Delete(n, None) => t.delete(schema, run.key(*n)),
                TxAct::Delete(n, Some(c)) => t.delete_if(schema, run.key(*n), c.render(run)),
                TxAct::Check(n, c) => t.check(schema, run.key(*n), c.render(run)),
            });
            match store.transact(&transaction).await {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Refused(refused(&e)),
            }
        }
    }
}

/// What a sequence leaves: each record (version and document) and the holder of each unique
/// value.
async fn state(
    store: &dyn TableStore,
    schema: &TableSchema,
    run: &Run,
) -> Result<(Vec<Option<(u64, Document)>>, Vec<Option<RecordKey>>), String> {
    let keys: Vec<RecordKey> = (0..KEYS).map(|n| run.key(n)).collect();
    let records = store
        .get_many(schema, &keys)
        .await
        .map_err(|e| format!("get_many: {e}"))?
        .into_iter()
        .map(|r| r.map(|r| (r.version, r.document)))
        .collect();
    let mut holders = Vec::new();
    if schema.uniques().is_empty() {
        return Ok((records, holders));
    }
    for sku in 0..SKUS {
        let holder = store
            .get_by_unique(schema, "sku", &[KeyValue::from(run.sku(sku))])
            .await
            .map_err(|e| format!("get_by_unique: {e}"))?;
        holders.push(holder.map(|r| r.key));
    }
    Ok((records, holders))
}

/// The run's records in the index `by-kind`, for each kind the generator writes.
async fn by_kind(
    store: &dyn TableStore,
    schema: &TableSchema,
    run: &Run,
) -> Result<Vec<Vec<RecordKey>>, String> {
    let mut lists = Vec::new();
    for kind in ["k1", "k2", "é"] {
        let page = store
            .query(schema, &Query::index("by-kind", kind).limit(1000))
            .await
            .map_err(|e| format!("query by-kind: {e}"))?;
        lists.push(
            page.items
                .into_iter()
                .map(|r| r.key)
                .filter(|k| k.partition == KeyValue::from(run.partition.as_str()))
                .collect(),
        );
    }
    Ok(lists)
}

/// How many operations the reference answered with a value and with an error.
#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    refused: AtomicUsize,
}

async fn run_sequence(
    store: &dyn TableStore,
    reference: &dyn TableStore,
    schema: &TableSchema,
    run: &Run,
    ops: &[Op],
    tally: &Tally,
) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        let expected = apply(reference, schema, run, op).await;
        let counter = match expected {
            Outcome::Refused(_) => &tally.refused,
            _ => &tally.done,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let got = apply(store, schema, run, op).await;
        if got != expected {
            return Err(format!(
                "operation {i} ({op:?}): the store answered {got:?}, the reference {expected:?}"
            ));
        }
    }
    let expected = state(reference, schema, run).await?;
    let got = state(store, schema, run).await?;
    if got != expected {
        return Err(format!(
            "after the sequence the store holds {got:?}, the reference {expected:?}"
        ));
    }
    // The query index as well as the records, where the store's indexes are read-after-write
    // (DynamoDB's GSIs may lag): a write that set a column wrong shows here.
    if store.index_consistency() == Consistency::ReadAfterWrite {
        let expected = by_kind(reference, schema, run).await?;
        let got = by_kind(store, schema, run).await?;
        if got != expected {
            return Err(format!(
                "after the sequence the index by-kind lists {got:?}, the reference {expected:?}"
            ));
        }
    }
    Ok(())
}

/// Random sequences of patches, conditional writes and transactions agree with the memory
/// reference, answer by answer, and leave the same records and unique values.
pub async fn random_writes_agree_with_the_reference(f: &Fixture) {
    differential(f, schema()).await;
}

/// [`random_writes_agree_with_the_reference`] on a table without a unique index.
pub async fn random_writes_without_unique_values_agree_with_the_reference(f: &Fixture) {
    differential(f, plain_schema()).await;
}

async fn differential(f: &Fixture, schema: TableSchema) {
    let seed: u64 = std::env::var("STOREKIT_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| getrandom::u64().unwrap_or(21));
    let cases: u32 = std::env::var("STOREKIT_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEQUENCES);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let reference = MemoryStore::new();
    reference
        .ensure_table(&schema)
        .await
        .expect("ensure_table on the reference");
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let sequences = AtomicUsize::new(0);
    let tally = Tally::default();
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&prop::collection::vec(op(), 1..MAX_OPS), |ops| {
            let seq = sequences.fetch_add(1, Ordering::Relaxed);
            let run = Run {
                partition: format!("seq{seq}"),
                seq,
            };
            runtime
                .block_on(run_sequence(store, &reference, &schema, &run, &ops, &tally))
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(failure) = outcome {
        panic!("STOREKIT_DIFF_SEED={seed}: {failure}");
    }
    assert!(sequences.load(Ordering::Relaxed) >= cases as usize);
    // The generators make writes that go through as well as ones that are refused: a test
    // where nearly everything is refused would compare little but error kinds.
    let (done, refused) = (
        tally.done.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
    );
    if std::env::var_os("STOREKIT_DIFF_TALLY").is_some() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "storekit-conformance: differential: {done} written, {refused} refused"
        );
    }
    assert!(
        done * 5 >= done + refused && refused * 10 >= done + refused,
        "{done} operations went through and {refused} were refused"
    );
}

/// A transaction in which several actions fail reports the first of them, on every backend
/// (the memory reference checks them in order; DynamoDB answers some conditions from a read
/// made before it sends anything, and must still name the earliest). Found by
/// [`random_writes_agree_with_the_reference`] on DynamoDB Local.
pub async fn a_transaction_names_its_first_failing_action(f: &Fixture) {
    let schema = schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let key = |n: i64| RecordKey::with_sort("first", n);
    let stored = doc_of(json!({"p": "first", "n": 2, "a": 1, "sku": "first-0"}));
    store.put(&schema, stored).await.expect("put");
    let cases = [
        (
            // A patch of a missing record, then a conditional delete that fails too.
            Transaction::new()
                .patch(&schema, key(0), Patch::new().set("a", 0))
                .delete_if(&schema, key(1), Condition::exists("p")),
            "TransactionFailed(0, NotFound(record))",
        ),
        (
            // A failing check, then a conditional delete that fails too.
            Transaction::new()
                .check(&schema, key(2), Condition::eq("a", 2))
                .delete_if(&schema, key(1), Condition::exists("p")),
            "TransactionFailed(0, Conflict(condition, expected 1, actual 1))",
        ),
        (
            // A put that succeeds alone, then the delete of a missing record under a
            // condition.
            Transaction::new()
                .put(&schema, doc_of(json!({"p": "first", "n": 3})))
                .delete_if(&schema, key(1), Condition::exists("p")),
            "TransactionFailed(1, Conflict(condition, expected 0, actual 0))",
        ),
        (
            // A patch that cannot be made on its record (`a` is no list), and a failing
            // check: DynamoDB refuses such a transaction whole, without naming the action.
            Transaction::new()
                .put(&schema, doc_of(json!({"p": "first", "n": 3})))
                .patch(&schema, key(2), Patch::new().set("a[0]", 1))
                .check(&schema, key(0), Condition::exists("p")),
            "TransactionFailed(1, InvalidInput(patch))",
        ),
        (
            // A unique value claimed, then released by the record holding it: in order, it
            // is still held when it is claimed.
            Transaction::new()
                .put(
                    &schema,
                    doc_of(json!({"p": "first", "n": 4, "sku": "first-0"})),
                )
                .patch(&schema, key(2), Patch::new().set("sku", "first-1")),
            "TransactionFailed(0, AlreadyExists(unique value))",
        ),
        (
            // Two new records claiming one unique value: the second finds it taken.
            Transaction::new()
                .put(
                    &schema,
                    doc_of(json!({"p": "first", "n": 5, "sku": "first-2"})),
                )
                .put(
                    &schema,
                    doc_of(json!({"p": "first", "n": 6, "sku": "first-2"})),
                ),
            "TransactionFailed(1, AlreadyExists(unique value))",
        ),
        (
            // A put claiming a unique value another record holds, then a patch of a missing
            // record, which DynamoDB finds before it sends anything.
            Transaction::new()
                .put(
                    &schema,
                    doc_of(json!({"p": "first", "n": 5, "sku": "first-0"})),
                )
                .patch(&schema, key(1), Patch::new().set("sku", "first-3")),
            "TransactionFailed(0, AlreadyExists(unique value))",
        ),
    ];
    for (transaction, expected) in cases {
        let answer = store.transact(&transaction).await;
        let got = answer.as_ref().map_err(refused).err();
        assert_eq!(got.as_deref(), Some(expected), "{transaction:?}");
    }
    let left: Vec<Option<u64>> = store
        .get_many(
            &schema,
            &[key(0), key(1), key(2), key(3), key(4), key(5), key(6)],
        )
        .await
        .expect("get_many")
        .into_iter()
        .map(|r| r.map(|r| r.version))
        .collect();
    let untouched = [None, None, Some(1), None, None, None, None];
    assert_eq!(left, untouched, "nothing was written");
    // Released, then claimed: it moves.
    let moved = Transaction::new()
        .patch(&schema, key(2), Patch::new().set("sku", "first-1"))
        .put(
            &schema,
            doc_of(json!({"p": "first", "n": 4, "sku": "first-0"})),
        );
    store.transact(&moved).await.expect("a unique value moves");
    for (sku, n) in [("first-0", 4), ("first-1", 2)] {
        let holder = store
            .get_by_unique(&schema, "sku", &[KeyValue::from(sku)])
            .await
            .expect("get_by_unique")
            .map(|r| r.key);
        assert_eq!(holder, Some(key(n)), "{sku}");
    }
}

fn doc_of(value: Value) -> Document {
    crate::tables::doc(value)
}

/// An `add` whose sum leaves the range of 64-bit integers (`i64::MIN` to `u64::MAX`) is
/// refused as the reference refuses it, alone and in a transaction, and nothing changes;
/// DynamoDB, which adds in 38 digits, wrote such sums until its updates were guarded. Found by
/// [`random_writes_agree_with_the_reference`] (`put {"m": {"y": -1}}`, `add("m.y", i64::MIN)`).
pub async fn adds_past_the_64_bit_range_are_refused(f: &Fixture) {
    let schema = schema();
    let store = f.tables().as_ref();
    store.ensure_table(&schema).await.expect("ensure_table");
    let key = RecordKey::with_sort("range", 1);
    let stored = doc_of(json!({"p": "range", "n": 1, "m": {"y": -1}, "big": u64::MAX, "a": 0.5}));
    store.put(&schema, stored).await.expect("put");
    for (patch, refused) in [
        (Patch::new().add("m.y", i64::MIN), true),
        (Patch::new().add("big", 1), true),
        (Patch::new().add("big", -1), false),
        (Patch::new().add("m.y", i64::MIN + 1), false),
        // A fraction adds in floating point, far past the integers' range.
        (Patch::new().add("a", i64::MAX), false),
    ] {
        let before = get(store, &schema, &key).await.expect("stored");
        let alone = store
            .patch(&schema, &key, &patch, None, Returning::New)
            .await;
        let after = get(store, &schema, &key).await.expect("stored");
        if refused {
            assert_matches!(
                &alone,
                Err(Error::InvalidInput { what: "patch", .. }),
                "{patch:?}"
            );
            assert_eq!(after, before, "{patch:?} changed the record");
            let together = store
                .transact(&Transaction::new().patch(&schema, key.clone(), patch.clone()))
                .await;
            assert_matches!(
                &together,
                Err(Error::TransactionFailed { index: 0, source, .. }) if matches!(**source, Error::InvalidInput { what: "patch", .. }),
                "{patch:?} in a transaction"
            );
        } else {
            let patched = alone.unwrap_or_else(|e| panic!("{patch:?}: {e:?}"));
            assert_eq!(patched.version, before.version + 1, "{patch:?}");
        }
    }
    let last = get(store, &schema, &key).await.expect("stored");
    assert_eq!(
        (&last.document["m"]["y"], &last.document["big"]),
        (&json!(i64::MIN), &json!(u64::MAX - 1))
    );
}
