//! Projections: reading only some paths of a record (DynamoDB's `ProjectionExpression`).
//!
//! A [`Projection`] names document paths in the syntax of conditions ([`Path`]: `status`,
//! `address.city`, `lines[2].sku`). A projected read ([`Query::select`](super::Query::select),
//! [`TableStore::get_selected`](super::TableStore::get_selected)) returns a partial document:
//! the selected paths that the record has, **plus the table's key fields** (so that a
//! record's [`key`](super::Record::key) is always whole), and the record's version.
//!
//! One rule, DynamoDB's as its own server answers it, on every backend ([`Projection::apply`]
//! is the reference that the memory backend uses and the conformance suite compares with):
//!
//! - A path keeps its value at its place: `a.b` of `{"a": {"b": 1, "c": 2}}` is
//!   `{"a": {"b": 1}}`.
//! - List elements keep their order but not their positions: `l[3]` and `l[1]` of
//!   `{"l": [10, 11, 12, 13]}` is `{"l": [11, 13]}`, and `a.b[2].c` of a document whose
//!   `a.b` is a list is `{"a": {"b": [{"c": …}]}}`.
//! - A path the record does not have is left out, without an error: a missing field, an
//!   index past the end of a list, a field of something that is not a map. A map or list
//!   that ends up holding nothing is left out with it; a selected empty map stays.
//! - Two paths of which one is a prefix of the other (`a` and `a.b`, or one path twice)
//!   overlap, and two that go on from one place by a field and by an index (`a.b` and
//!   `a[0]`) conflict: both are [`Error::InvalidInput`] (`"projection"`), as DynamoDB refuses
//!   them, checked before any backend runs. So are an empty selection, more than
//!   [`MAX_SELECTED_PATHS`] paths, a field name over
//!   [`MAX_FIELD_NAME_BYTES`](super::MAX_FIELD_NAME_BYTES) bytes and a selection
//!   longer than a DynamoDB expression can be.
//!
//! DynamoDB projects in the database (`ProjectionExpression`); SQL and memory read the whole
//! record and project it in storekit, after reading.
//!
//! ```
//! use serde_json::json;
//! use storekit_core::table::{KeyDef, Projection, TableSchema};
//!
//! let schema = TableSchema::builder("orders", KeyDef::text("id")).build()?;
//! let select = Projection::new(["status", "lines[1].sku"]);
//! select.check(&schema)?;
//! let order = json!({"id": "o1", "status": "open", "total": 9,
//!                    "lines": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}]});
//! let order = order.as_object().cloned().unwrap_or_default();
//! assert_eq!(
//!     serde_json::Value::Object(select.apply(&schema, &order)),
//!     json!({"id": "o1", "status": "open", "lines": [{"sku": "b"}]})
//! );
//! # Ok::<(), storekit_core::Error>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::document::Document;
use super::expr::{Path, Step};
use super::schema::TableSchema;
use crate::{Error, Result};

/// Most paths in one projection.
pub const MAX_SELECTED_PATHS: usize = 100;
/// Longest projection, as DynamoDB's expression text with placeholders would spell it: its
/// limit is 4 KB, and the key, index and version attributes storekit adds are kept free.
const MAX_PROJECTION_CHARS: usize = 3000;

/// The document paths a projected read returns; see the [module docs](self) for the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Projection {
    paths: Vec<Path>,
}

impl Projection {
    /// The paths to read, each as a [`Path`] or its text (`a.b[2].c`). Checked when used, or
    /// with [`Projection::check`].
    pub fn new<P: Into<Path>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// The paths, as given.
    #[must_use]
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// Checks the selection: 1 to [`MAX_SELECTED_PATHS`] valid paths, field names of at most
    /// [`MAX_FIELD_NAME_BYTES`](super::MAX_FIELD_NAME_BYTES) bytes, no two that
    /// overlap or conflict, and a length DynamoDB accepts. [`Error::InvalidInput`]
    /// (`"projection"`) says what is wrong.
    pub fn check(&self, schema: &TableSchema) -> Result<()> {
        let bad = |why: String| Err(Error::invalid("projection", why));
        for path in &self.paths {
            schema.check_not_version("projection", path.field())?;
        }
        if self.paths.is_empty() {
            return bad("select at least one path".to_owned());
        }
        if self.paths.len() > MAX_SELECTED_PATHS {
            return bad(format!(
                "{} paths, over the limit of {MAX_SELECTED_PATHS}",
                self.paths.len()
            ));
        }
        let mut chars = 0;
        for path in &self.paths {
            if let Some(why) = path.invalid_reason() {
                return bad(why.to_owned());
            }
            for step in path.steps() {
                chars += match step {
                    Step::Field(name) => {
                        if name.len() > crate::validate::MAX_FIELD_NAME_BYTES {
                            return bad(format!(
                                "path {path}: a field name is over {} bytes",
                                crate::validate::MAX_FIELD_NAME_BYTES
                            ));
                        }
                        // `#a12.`: a placeholder per field.
                        6
                    }
                    Step::Index(index) => 3 + index.to_string().len(),
                };
            }
            chars += 2;
        }
        if chars > MAX_PROJECTION_CHARS {
            return bad("longer than DynamoDB's 4 KB expression limit allows".to_owned());
        }
        for (n, a) in self.paths.iter().enumerate() {
            for b in &self.paths[n + 1..] {
                let shared = a
                    .steps()
                    .iter()
                    .zip(b.steps())
                    .take_while(|(x, y)| x == y)
                    .count();
                if shared == a.steps().len() || shared == b.steps().len() {
                    return bad(format!("paths {a} and {b} overlap: keep one"));
                }
                if matches!(
                    (&a.steps()[shared], &b.steps()[shared]),
                    (Step::Field(_), Step::Index(_)) | (Step::Index(_), Step::Field(_))
                ) {
                    return bad(format!(
                        "paths {a} and {b} conflict: one reads a map where the other reads a list"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The record's `document` as a projected read returns it: the selected paths it has, by
    /// the rule of the [module docs](self), and the table's key fields. The reference every
    /// backend's projected reads agree with.
    #[must_use]
    pub fn apply(&self, schema: &TableSchema, document: &Document) -> Document {
        let mut projected = project(document, &self.paths);
        for field in table_keys(schema) {
            if let Some(value) = document.get(field) {
                projected.insert(field.to_owned(), value.clone());
            }
        }
        projected
    }

    /// `record` with its document projected to these paths, the key fields not added: what
    /// a backend that reads whole records answers a projected read with.
    #[must_use]
    pub fn project_record(&self, mut record: super::Record) -> super::Record {
        record.document = project(&record.document, &self.paths);
        record
    }

    /// What a backend is asked to read for this selection: the selected paths, and the whole
    /// of each of `fields` (the keys and attributes the layer needs), which replace any
    /// selected path inside them, so that no two paths overlap.
    pub(crate) fn fetching(&self, fields: &[&str]) -> Self {
        let mut paths: Vec<Path> = self
            .paths
            .iter()
            .filter(|path| !fields.contains(&path.field()))
            .cloned()
            .collect();
        let mut added: Vec<&str> = Vec::new();
        for field in fields {
            if !added.contains(field) {
                added.push(field);
                paths.push(Path::from_field(field));
            }
        }
        Self { paths }
    }

    /// Brings a document read through `self.fetching(fields)` (projected by the backend, or
    /// whole) to what the caller selected: the selected paths and the table's key fields.
    /// The fields fetched whole are projected here; the rest are as the backend projected
    /// them, or projected here when `whole` (a backend that read the whole record).
    pub(crate) fn trim(
        &self,
        schema: &TableSchema,
        fields: &[&str],
        mut document: Document,
        whole: bool,
    ) -> Document {
        if whole {
            return self.apply(schema, &document);
        }
        let keys = table_keys(schema);
        let (inside, outside): (Vec<Path>, Vec<Path>) = self
            .paths
            .iter()
            .cloned()
            .partition(|path| fields.contains(&path.field()));
        let mut trimmed = project(&document, &inside);
        for path in &outside {
            if let Some((field, value)) = document.remove_entry(path.field()) {
                trimmed.insert(field, value);
            }
        }
        for field in keys {
            if let Some(value) = document.get(field) {
                trimmed.insert(field.to_owned(), value.clone());
            }
        }
        trimmed
    }
}

/// The table's own key fields, which every projected record keeps.
fn table_keys(schema: &TableSchema) -> Vec<&str> {
    std::iter::once(schema.partition())
        .chain(schema.sort())
        .map(super::schema::KeyDef::field)
        .collect()
}

/// What a selection of `paths` holds of one place of a document: the whole value, or some of
/// its fields, or some of its elements.
#[derive(Debug, Default)]
enum Tree {
    #[default]
    Whole,
    Fields(BTreeMap<String, Tree>),
    Elements(BTreeMap<usize, Tree>),
}

impl Tree {
    fn add(&mut self, steps: &[Step]) {
        let Some((step, rest)) = steps.split_first() else {
            return;
        };
        match (step, &mut *self) {
            (Step::Field(name), Tree::Fields(fields)) => {
                fields.entry(name.clone()).or_default().add(rest);
            }
            (Step::Index(index), Tree::Elements(elements)) => {
                elements.entry(*index).or_default().add(rest);
            }
            // A leaf or the other kind: a checked selection has neither (no overlap, no
            // conflict), so the first path to arrive shapes the node.
            (Step::Field(name), _) => {
                let mut child = Tree::default();
                child.add(rest);
                *self = Tree::Fields(BTreeMap::from([(name.clone(), child)]));
            }
            (Step::Index(index), _) => {
                let mut child = Tree::default();
                child.add(rest);
                *self = Tree::Elements(BTreeMap::from([(*index, child)]));
            }
        }
    }

    fn select(&self, value: &Value) -> Option<Value> {
        match (self, value) {
            (Tree::Whole, value) => Some(value.clone()),
            (Tree::Fields(wanted), Value::Object(fields)) => {
                let kept: serde_json::Map<String, Value> = wanted
                    .iter()
                    .filter_map(|(name, tree)| {
                        Some((name.clone(), tree.select(fields.get(name)?)?))
                    })
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            // DynamoDB returns the selected elements that exist, in the list's order, as a
            // shorter list.
            (Tree::Elements(wanted), Value::Array(items)) => {
                let kept: Vec<Value> = wanted
                    .iter()
                    .filter_map(|(index, tree)| tree.select(items.get(*index)?))
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            _ => None,
        }
    }
}

/// The parts of `document` at `paths` (a checked selection), by the rule of the
/// [module docs](self); the key fields are not added.
#[must_use]
pub fn project(document: &Document, paths: &[Path]) -> Document {
    let mut fields: BTreeMap<&str, Tree> = BTreeMap::new();
    for path in paths {
        let steps = path.steps();
        let Some(Step::Field(name)) = steps.first() else {
            continue;
        };
        match fields.get_mut(name.as_str()) {
            Some(tree) => tree.add(&steps[1..]),
            None => {
                let mut tree = Tree::default();
                tree.add(&steps[1..]);
                fields.insert(name.as_str(), tree);
            }
        }
    }
    fields
        .into_iter()
        .filter_map(|(name, tree)| Some((name.to_owned(), tree.select(document.get(name)?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::table::KeyDef;

    fn schema() -> TableSchema {
        TableSchema::builder("things", KeyDef::text("id"))
            .build()
            .expect("valid schema")
    }

    fn doc(value: Value) -> Document {
        match value {
            Value::Object(document) => document,
            _ => Document::new(),
        }
    }

    /// The answers DynamoDB Local gave to these selections of this item (GetItem with a
    /// `ProjectionExpression`); the conformance suite asks every backend the same.
    #[test]
    fn projections_follow_dynamodb() {
        let item = doc(json!({
            "id": "x",
            "a": {"b": [{"c": 1, "d": 2}, {"c": 3}, {"c": 5, "e": 6}, {"z": 9}],
                  "m": {"n": 1}, "empty": {}},
            "l": [10, 11, 12, 13], "n": 5, "s": "str"
        }));
        let cases: &[(&[&str], Value)] = &[
            (&["a.b[2].c"], json!({"a": {"b": [{"c": 5}]}})),
            (&["a.b[3].c"], json!({})),
            (
                &["a.b[2].c", "a.b[0].c"],
                json!({"a": {"b": [{"c": 1}, {"c": 5}]}}),
            ),
            (&["a.b[2].c", "a.b[3].c"], json!({"a": {"b": [{"c": 5}]}})),
            (&["l[3]", "l[1]"], json!({"l": [11, 13]})),
            (&["l[7]"], json!({})),
            (&["l[1]", "l[7]"], json!({"l": [11]})),
            (&["a.m.x"], json!({})),
            (&["a.empty"], json!({"a": {"empty": {}}})),
            (&["a.m"], json!({"a": {"m": {"n": 1}}})),
            (
                &["a.b[0].c", "a.b[0].d"],
                json!({"a": {"b": [{"c": 1, "d": 2}]}}),
            ),
            (&["n.x"], json!({})),
            (&["n[0]"], json!({})),
            (&["missing"], json!({})),
            (&["s", "n"], json!({"n": 5, "s": "str"})),
        ];
        for (paths, expected) in cases {
            let select = Projection::new(paths.iter().copied());
            assert!(select.check(&schema()).is_ok(), "{paths:?}");
            assert_eq!(
                Value::Object(project(&item, select.paths())),
                *expected,
                "{paths:?}"
            );
            let mut with_key = expected.as_object().cloned().unwrap_or_default();
            with_key.insert("id".into(), json!("x"));
            assert_eq!(select.apply(&schema(), &item), with_key, "{paths:?}");
        }
    }

    #[test]
    fn overlapping_conflicting_and_oversized_selections_are_refused() {
        let refused = |select: Projection| {
            matches!(
                select.check(&schema()),
                Err(Error::InvalidInput {
                    what: "projection",
                    ..
                })
            )
        };
        assert!(refused(Projection::new(["a", "a.b"])));
        assert!(refused(Projection::new(["a.b", "a[0]"])));
        assert!(refused(Projection::new(["l[1]", "l[1]"])));
        assert!(refused(Projection::new(["a.b[0]", "a.b[0].c"])));
        assert!(refused(Projection::new(Vec::<&str>::new())));
        assert!(refused(Projection::new(["a..b"])));
        assert!(refused(Projection::new(["_storekit_version"])));
        let many: Vec<String> = (0..=MAX_SELECTED_PATHS).map(|n| format!("f{n}")).collect();
        assert!(refused(Projection::new(many)));
        assert!(refused(Projection::new([
            "x".repeat(crate::validate::MAX_FIELD_NAME_BYTES + 1)
        ])));
        let deep: Vec<String> = (0..90)
            .map(|n| format!("f{n}.{}", ["g"; 30].join(".")))
            .collect();
        assert!(refused(Projection::new(deep)));
        assert!(!refused(Projection::new([
            "a.b", "a.c[0]", "l[0]", "l[2].x"
        ])));
    }

    #[test]
    fn fields_fetched_whole_are_trimmed_to_the_selection() {
        let schema = TableSchema::builder("things", KeyDef::text("id"))
            .index("by-at", KeyDef::text("g"), Some(KeyDef::int("at")))
            .build()
            .expect("valid schema");
        let select = Projection::new(["l[1]", "m.x"]);
        let fields = ["id", "g", "at", "m"];
        let fetch = select.fetching(&fields);
        assert!(fetch.check(&schema).is_ok());
        let stored = doc(json!({"id": "x", "g": "k", "at": 3, "l": [1, 2], "m": {"x": 1, "y": 2}}));
        // As DynamoDB answers the fetch: `l` projected, `m` and the keys whole.
        let fetched = project(&stored, fetch.paths());
        assert_eq!(
            select.trim(&schema, &fields, fetched, false),
            select.apply(&schema, &stored)
        );
        assert_eq!(
            select.trim(&schema, &fields, stored, true),
            doc(json!({"id": "x", "l": [2], "m": {"x": 1}}))
        );
    }
}
