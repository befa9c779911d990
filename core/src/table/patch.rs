//! Update expressions: a change to parts of a record, made by the database in one request.
//!
//! A [`Patch`] is a list of actions on document paths, applied together and atomically:
//! `set`, `set_if_absent`, `remove`, `add` (a number, from 0 when missing) and `append`
//! (to a list, from an empty one when missing). The rules are DynamoDB's, as its own server
//! applies them, and every backend follows them ([`Patch::apply`] is the reference):
//!
//! - The parent of a path must exist and be a map (for a field) or a list (for an element);
//!   otherwise the patch is refused and nothing changes. Setting an element past a list's end
//!   appends it; removing one past the end does nothing.
//! - `add` needs a number there (or nothing), `append` a list (or nothing).
//! - No two actions may touch overlapping paths (`a` and `a.b`), nor two elements of one list
//!   (DynamoDB would apply both against the list as it was, which no other database can say
//!   in one statement), nor the table's key fields.
//! - The result follows the document rules, as any write: a wrong type for an index key field,
//!   a number out of range, an item over the size limit are refused, and nothing changes.
//!
//! `add` takes an integer: counters then add exactly on every backend. Added to a stored
//! fraction, DynamoDB adds in decimal and the other backends in binary floating point, which
//! can differ in the last digit.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::document::Document;
use super::expr::{Path, Step};
use super::schema::TableSchema;
use super::value::{KeyType, KeyValue};
use crate::{Error, Result};

/// Most actions in one patch.
pub const MAX_PATCH_ACTIONS: usize = 100;

/// One action of a [`Patch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// Sets the value at the path.
    Set(Path, Value),
    /// Sets the value at the path unless one is there.
    SetIfAbsent(Path, Value),
    /// Removes the value at the path, if any.
    Remove(Path),
    /// Adds to the number at the path (0 when there is none).
    Add(Path, i64),
    /// Appends to the list at the path (an empty one when there is none).
    Append(Path, Vec<Value>),
}

impl Action {
    /// The path the action changes.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Set(path, _)
            | Self::SetIfAbsent(path, _)
            | Self::Remove(path)
            | Self::Add(path, _)
            | Self::Append(path, _) => path,
        }
    }
}

/// What a patch returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Returning {
    /// Only the new version.
    #[default]
    None,
    /// The whole record after the patch.
    New,
    /// The whole record before it.
    Old,
    /// The top-level fields the patch touched, as they are after it.
    UpdatedNew,
}

/// What [`TableStore::patch`](super::TableStore::patch) returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    /// The record's key.
    pub key: super::RecordKey,
    /// Its version after the patch.
    pub version: u64,
    /// What [`Returning`] asked for (`None` for [`Returning::None`]).
    pub document: Option<Document>,
}

/// What `returning` asks for, from the record before (`old`) and after (`new`) a patch.
///
/// `old` is `None` where the backend made the patch without reading the record (PostgreSQL's
/// one-statement patch), which it does only when `returning` is not [`Returning::Old`]; asked
/// for then, there is nothing to return.
#[must_use]
pub fn returned(
    patch: &Patch,
    returning: Returning,
    old: Option<&Document>,
    new: &Document,
) -> Option<Document> {
    match returning {
        Returning::None => None,
        Returning::New => Some(new.clone()),
        Returning::Old => old.cloned(),
        Returning::UpdatedNew => Some(patch.updated(new)),
    }
}

/// The row a patch makes of the record `current`, for a backend that reads and writes it under
/// one lock: `condition` checked on it ([`Error::Conflict`], `"condition"`), the patch applied,
/// the document rules kept and the key unchanged.
pub fn patch_row(
    schema: &TableSchema,
    current: &super::Record,
    patch: &Patch,
    condition: Option<&super::Condition>,
) -> Result<super::Row> {
    let bytes = super::expr::bytes_fields(schema);
    if condition.is_some_and(|c| !c.matches(&current.document, &bytes)) {
        return Err(Error::Conflict {
            what: "condition",
            expected: current.version,
            actual: current.version,
        });
    }
    let row = schema.row(patch.apply(&current.document)?)?;
    if *row.key() != current.key {
        return Err(Error::invalid(
            "patch",
            "a patch cannot change the record's key",
        ));
    }
    Ok(row)
}

/// A change to parts of a record; see the module docs.
///
/// ```
/// use storekit_core::table::Patch;
///
/// let ship = Patch::new()
///     .set("status", "shipped")
///     .set("last_update", 1_700_000_000)
///     .add("shipments", 1)
///     .append("history", ["shipped"])
///     .remove("draft");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    actions: Vec<Action>,
}

impl Patch {
    /// A patch that changes nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `path` to `value`.
    #[must_use]
    pub fn set(mut self, path: impl Into<Path>, value: impl Into<Value>) -> Self {
        self.actions.push(Action::Set(path.into(), value.into()));
        self
    }

    /// Sets `path` to `value` unless something is there.
    #[must_use]
    pub fn set_if_absent(mut self, path: impl Into<Path>, value: impl Into<Value>) -> Self {
        self.actions
            .push(Action::SetIfAbsent(path.into(), value.into()));
        self
    }

    /// Removes `path`.
    #[must_use]
    pub fn remove(mut self, path: impl Into<Path>) -> Self {
        self.actions.push(Action::Remove(path.into()));
        self
    }

    /// Adds `amount` to the number at `path`, from 0 when there is none.
    #[must_use]
    pub fn add(mut self, path: impl Into<Path>, amount: i64) -> Self {
        self.actions.push(Action::Add(path.into(), amount));
        self
    }

    /// Appends `values` to the list at `path`, from an empty one when there is none.
    #[must_use]
    pub fn append<V: Into<Value>>(
        mut self,
        path: impl Into<Path>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.actions.push(Action::Append(
            path.into(),
            values.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// The actions, in order.
    #[must_use]
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The top-level fields the patch touches.
    #[must_use]
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self.actions.iter().map(|a| a.path().field()).collect();
        fields.sort_unstable();
        fields.dedup();
        fields
    }

    /// Checks the patch against the schema: 1 to [`MAX_PATCH_ACTIONS`] actions on valid,
    /// non-overlapping paths, none on a key field of the table, values that follow the
    /// document rules. [`Error::InvalidInput`] (`"patch"`) says what is wrong.
    pub fn check(&self, schema: &TableSchema) -> Result<()> {
        let bad = |why: String| Err(Error::invalid("patch", why));
        if self.actions.is_empty() || self.actions.len() > MAX_PATCH_ACTIONS {
            return bad(format!(
                "a patch has 1 to {MAX_PATCH_ACTIONS} actions, not {}",
                self.actions.len()
            ));
        }
        let keys: Vec<&str> = std::iter::once(schema.partition().field())
            .chain(schema.sort().map(super::KeyDef::field))
            .collect();
        for (i, action) in self.actions.iter().enumerate() {
            let path = action.path();
            Path::parse(&path.to_string()).map_err(|e| match e {
                Error::InvalidInput { why, .. } => Error::invalid("patch", why),
                other => other,
            })?;
            if keys.contains(&path.field()) {
                return bad(format!("{path} is part of the record's key"));
            }
            schema.check_not_version("patch", path.field())?;
            if let Some(kind) = key_kind(schema, path) {
                // A key field keeps its type, so every backend refuses the same patches
                // before anything is sent.
                let field = path.field();
                match action {
                    Action::Set(_, Value::Null) | Action::SetIfAbsent(_, Value::Null) => {
                        return bad(format!(
                            "{path} is an index key: remove it rather than set it to null"
                        ));
                    }
                    Action::Set(_, value) | Action::SetIfAbsent(_, value) => {
                        KeyValue::from_field(kind, field, Some(value)).map_err(|e| match e {
                            Error::InvalidInput { why, .. } => Error::invalid("patch", why),
                            other => other,
                        })?;
                    }
                    Action::Add(..) if kind == KeyType::Int => {}
                    Action::Remove(_) => {}
                    _ => {
                        return bad(format!(
                            "{path} is an index key of type {kind}: it can be set or removed"
                        ));
                    }
                }
            }
            match action {
                Action::Set(_, value) | Action::SetIfAbsent(_, value) => check_value(value)?,
                Action::Append(_, values) => {
                    check_value(&Value::Array(values.clone()))?;
                }
                Action::Remove(_) | Action::Add(..) => {}
            }
            for other in &self.actions[..i] {
                if let Some(why) = clash(path, other.path()) {
                    return bad(why);
                }
            }
        }
        Ok(())
    }

    /// Applies the patch to `document` as DynamoDB would: all actions or, when one cannot be
    /// made, none ([`Error::InvalidInput`], `"patch"`).
    pub fn apply(&self, document: &Document) -> Result<Document> {
        let mut root = Value::Object(document.clone());
        for action in &self.actions {
            apply(&mut root, action)?;
        }
        match root {
            Value::Object(document) => Ok(document),
            _ => Err(Error::invalid("patch", "the document is no longer a map")),
        }
    }

    /// What [`Returning::UpdatedNew`] returns: the top-level fields the patch touched, as
    /// they are in `new`.
    #[must_use]
    pub fn updated(&self, new: &Document) -> Document {
        self.fields()
            .into_iter()
            .filter_map(|field| new.get(field).map(|v| (field.to_owned(), v.clone())))
            .collect()
    }
}

/// The type of the index key field `path` is, when it is one.
fn key_kind(schema: &TableSchema, path: &Path) -> Option<KeyType> {
    if path.steps().len() != 1 {
        return None;
    }
    schema
        .key_fields()
        .into_iter()
        .find(|(field, _)| *field == path.field())
        .map(|(_, kind)| kind)
}

/// `value` as a document stores it in a top-level field (`2.0` as `2`, say), or
/// [`Error::InvalidInput`] (`"patch"`) when it breaks the document rules (a number out of
/// DynamoDB's range, nesting, a field name): the value a backend writes for a patch's `set`,
/// `set_if_absent` or `append`, and the check [`Patch::check`] makes of it.
pub fn canonical_value(value: &Value) -> Result<Value> {
    let mut wrapper = serde_json::Map::new();
    wrapper.insert("v".to_owned(), value.clone());
    crate::validate::normalize_json("patch", &mut wrapper)?;
    Ok(wrapper.remove("v").unwrap_or(Value::Null))
}

fn check_value(value: &Value) -> Result<()> {
    canonical_value(value).map(drop)
}

/// Why two actions' paths cannot be in one patch, if they cannot.
fn clash(a: &Path, b: &Path) -> Option<String> {
    let common = a
        .steps()
        .iter()
        .zip(b.steps())
        .take_while(|(x, y)| x == y)
        .count();
    if common == a.steps().len() || common == b.steps().len() {
        return Some(format!("{a} and {b} overlap"));
    }
    let diverge = (&a.steps()[common], &b.steps()[common]);
    if matches!(diverge, (Step::Index(_), _) | (_, Step::Index(_))) {
        return Some(format!(
            "{a} and {b} change two elements of one list, which only DynamoDB can do at once"
        ));
    }
    None
}

fn invalid_path(path: &Path) -> Error {
    Error::invalid(
        "patch",
        format!("{path}: its parent does not exist or is not a map or list"),
    )
}

/// The container holding the last step of `path`, created by nothing: it must exist.
fn parent<'a>(root: &'a mut Value, path: &Path) -> Result<&'a mut Value> {
    let steps = path.steps();
    let mut value = root;
    for step in &steps[..steps.len().saturating_sub(1)] {
        value = match (step, value) {
            (Step::Field(name), Value::Object(fields)) => fields.get_mut(name),
            (Step::Index(index), Value::Array(items)) => items.get_mut(*index),
            _ => None,
        }
        .ok_or_else(|| invalid_path(path))?;
    }
    Ok(value)
}

fn current<'a>(root: &'a mut Value, path: &Path) -> Result<Option<&'a mut Value>> {
    let last = path.steps().last();
    Ok(match (last, parent(root, path)?) {
        (Some(Step::Field(name)), Value::Object(fields)) => fields.get_mut(name),
        (Some(Step::Index(index)), Value::Array(items)) => items.get_mut(*index),
        _ => return Err(invalid_path(path)),
    })
}

fn put(root: &mut Value, path: &Path, value: Value) -> Result<()> {
    match (path.steps().last(), parent(root, path)?) {
        (Some(Step::Field(name)), Value::Object(fields)) => {
            fields.insert(name.clone(), value);
        }
        (Some(Step::Index(index)), Value::Array(items)) => match items.get_mut(*index) {
            Some(slot) => *slot = value,
            // Past the end: appended, as DynamoDB does.
            None => items.push(value),
        },
        _ => return Err(invalid_path(path)),
    }
    Ok(())
}

fn apply(root: &mut Value, action: &Action) -> Result<()> {
    match action {
        Action::Set(path, value) => put(root, path, value.clone()),
        Action::SetIfAbsent(path, value) => match current(root, path)? {
            Some(_) => Ok(()),
            None => put(root, path, value.clone()),
        },
        Action::Remove(path) => {
            match (path.steps().last(), parent(root, path)?) {
                (Some(Step::Field(name)), Value::Object(fields)) => {
                    fields.remove(name);
                }
                (Some(Step::Index(index)), Value::Array(items)) => {
                    if *index < items.len() {
                        items.remove(*index);
                    }
                }
                _ => return Err(invalid_path(path)),
            }
            Ok(())
        }
        Action::Add(path, amount) => {
            let sum = match current(root, path)? {
                None => Value::from(*amount),
                Some(Value::Number(n)) => add(n, *amount)?,
                Some(_) => {
                    return Err(Error::invalid(
                        "patch",
                        format!("{path} does not hold a number to add to"),
                    ));
                }
            };
            put(root, path, sum)
        }
        Action::Append(path, values) => match current(root, path)? {
            None => put(root, path, Value::Array(values.clone())),
            Some(Value::Array(items)) => {
                items.extend(values.iter().cloned());
                Ok(())
            }
            Some(_) => Err(Error::invalid(
                "patch",
                format!("{path} does not hold a list to append to"),
            )),
        },
    }
}

fn add(n: &serde_json::Number, amount: i64) -> Result<Value> {
    let sum = if let Some(int) = n.as_i64() {
        i128::from(int) + i128::from(amount)
    } else if let Some(int) = n.as_u64() {
        i128::from(int) + i128::from(amount)
    } else {
        // A fraction: added in binary floating point (see the module docs).
        #[allow(clippy::cast_precision_loss)]
        let sum = n.as_f64().unwrap_or(0.0) + amount as f64;
        return Ok(Value::from(sum));
    };
    if let Ok(int) = i64::try_from(sum) {
        Ok(Value::from(int))
    } else if let Ok(int) = u64::try_from(sum) {
        Ok(Value::from(int))
    } else {
        Err(Error::invalid(
            "patch",
            "the sum is out of the 64-bit range",
        ))
    }
}

/// Whether a conditional write (`put_if`, `replace_if`, `delete_if`) may go ahead over
/// `current`, the record as stored under the backend's lock: `condition` must hold on its
/// document, or, when there is no record, on an empty document (DynamoDB's rule: `not_exists`
/// holds there and a comparison fails). A failed condition is [`Error::Conflict`] with `what`
/// `"condition"` and the stored version in both fields (0 when there is no record).
pub fn condition_holds(
    schema: &TableSchema,
    current: Option<&super::Record>,
    condition: &super::Condition,
) -> Result<()> {
    let bytes = super::expr::bytes_fields(schema);
    let empty = Document::new();
    let (document, version) = current.map_or((&empty, 0), |r| (&r.document, r.version));
    if condition.matches(document, &bytes) {
        Ok(())
    } else {
        Err(Error::Conflict {
            what: "condition",
            expected: version,
            actual: version,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::table::KeyDef;

    fn doc(value: Value) -> Document {
        match value {
            Value::Object(map) => map,
            _ => Document::new(),
        }
    }

    fn base() -> Document {
        doc(json!({"id": "u", "s": "txt", "l": [1, "a"], "m": {"k": 1}, "n": 5}))
    }

    /// The answers DynamoDB Local gave to the same update expressions on the same item.
    #[test]
    fn answers_match_dynamodb_local() {
        let ok = |patch: Patch, expected: Value| {
            let mut want = base();
            want.remove("id");
            for (k, v) in doc(expected) {
                want.insert(k, v);
            }
            let mut got = patch.apply(&base()).expect("applies");
            got.remove("id");
            (got, want)
        };
        let cases = [
            (Patch::new().remove("l[5]"), json!({})),
            (Patch::new().remove("l[0]"), json!({"l": ["a"]})),
            (Patch::new().set("l[5]", 1), json!({"l": [1, "a", 1]})),
            (Patch::new().add("q", 1), json!({"q": 1})),
            (Patch::new().append("l", [9]), json!({"l": [1, "a", 9]})),
            (Patch::new().add("m.k", 1), json!({"m": {"k": 2}})),
            (Patch::new().set_if_absent("n", 9), json!({})),
            (Patch::new().set_if_absent("o", 9), json!({"o": 9})),
        ];
        for (patch, expected) in cases {
            let (got, want) = ok(patch.clone(), expected);
            assert_eq!(got, want, "{patch:?}");
        }
        for refused in [
            Patch::new().set("a.b", 1),
            Patch::new().remove("a.b"),
            Patch::new().add("s", 1),
            Patch::new().append("s", [9]),
            Patch::new().set("l.x", 1),
            Patch::new().set("m[1]", 1),
            Patch::new().set("m.k.deep", 1),
            Patch::new().remove("s.x"),
        ] {
            assert!(
                matches!(
                    refused.apply(&base()),
                    Err(Error::InvalidInput { what: "patch", .. })
                ),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn checks_refuse_overlaps_keys_and_bad_values() {
        let schema = TableSchema::builder("things", KeyDef::text("id"))
            .index("by-rank", KeyDef::text("group"), Some(KeyDef::int("rank")))
            .build()
            .expect("schema");
        for bad in [
            Patch::new(),
            Patch::new().set("m", 1).set("m.k", 2),
            Patch::new().set("n", 1).remove("n"),
            Patch::new().remove("l[0]").remove("l[1]"),
            Patch::new().set("id", "x"),
            Patch::new().set("a..b", 1),
            Patch::new().set("a", 1e200),
            Patch::new().set("_storekit_version", 1),
            Patch::new().set("rank", "first"),
            Patch::new().append("group", ["x"]),
            Patch::new().add("group", 1),
            Patch::new().set("rank", Value::Null),
        ] {
            assert!(
                matches!(
                    bad.check(&schema),
                    Err(Error::InvalidInput { what: "patch", .. })
                ),
                "{bad:?}"
            );
        }
        Patch::new()
            .set("m.k", 1)
            .set("m.j", 2)
            .add("n", 1)
            .set("l[0]", 1)
            .add("rank", 1)
            .set("group", "g")
            .check(&schema)
            .expect("valid");
    }

    #[test]
    fn counters_stay_exact_integers() {
        let d = doc(json!({"id": "u", "c": 9_007_199_254_740_993_i64}));
        let patched = Patch::new().add("c", 1).apply(&d).expect("adds");
        assert_eq!(patched["c"], json!(9_007_199_254_740_994_i64));
        let d = doc(json!({"id": "u", "c": i64::MAX}));
        assert_eq!(
            Patch::new().add("c", 1).apply(&d).expect("adds")["c"],
            json!(9_223_372_036_854_775_808_u64)
        );
        let d = doc(json!({"id": "u", "c": u64::MAX}));
        assert!(Patch::new().add("c", 1).apply(&d).is_err());
    }
}
