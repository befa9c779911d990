//! A patch as one PostgreSQL `UPDATE … RETURNING`, when it can be said exactly in `jsonb`.
//!
//! The reference is [`Patch::apply`] with the document rules; a statement that would answer
//! otherwise is never sent. So the fast statement is made only for the patches whose result
//! `jsonb` computes exactly as the reference does, and its `WHERE` holds every condition
//! under which that is so. When it changes no row (no record, the condition failed, an
//! action could not be made, the result would be too big, or a value was of a kind the
//! statement does not do), the caller runs the locked read-and-write, which gives the exact
//! answer — the typed error, or the patch applied to a record that changed meanwhile.
//!
//! Made only for: a table without unique indexes, computed keys or expiry; actions on
//! top-level fields that are no key of the table; `add` to an integer (or to nothing) with an
//! integer result; `append` to a list (or to nothing); `Returning` other than `Old`. A query
//! index key field may be set or removed: its column is set in the same statement, as a
//! write of the whole row sets it. Everything else keeps the locked path, whose cost is three
//! more round trips.
//!
//! SQLite keeps its locked path: its transaction runs in-process, with no round trip to save,
//! and its JSON functions respell numbers (see `filter.rs`).

use serde_json::Value;
use storekit_core::Result;
use storekit_core::table::expr::Step;
use storekit_core::table::patch::{Action, canonical_value};
use storekit_core::table::{Condition, KeyValue, Patch, RecordKey, Returning};

use super::{Builder, Dialect, Layout, MAX_VERSION_SQL, Param, filter};
use crate::dialect::Statement;

/// Deepest value the statement sets: well inside DynamoDB's nesting limit one level down, so
/// that no nesting rule can refuse the result.
const MAX_VALUE_DEPTH: usize = 16;

/// The most the stored document's text may be: `jsonb`'s text is at least half a document's
/// size by DynamoDB's rule (each string, name and number at least as long, `true`, `false`
/// and `null` longer, and each list or map at least half its `3 + elements` bytes), so a
/// result under half the limit is under the limit; a bigger one takes the exact path.
const MAX_TEXT_BYTES: usize = storekit_core::table::MAX_DOCUMENT_BYTES / 2;

impl Layout {
    /// The patch as one statement returning `version, document` after it, or `None` when it
    /// must take the locked path (see the module docs).
    pub(crate) fn patch_in_place(
        &self,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<Option<Statement>> {
        let schema = &self.schema;
        if self.dialect != Dialect::Postgres
            || returning == Returning::Old
            || !schema.uniques().is_empty()
            || schema.has_computed_keys()
            || schema.ttl().is_some()
        {
            return Ok(None);
        }
        let table_keys: Vec<&str> = std::iter::once(schema.partition())
            .chain(schema.sort())
            .map(|k| k.field())
            .collect();
        let index_fields: Vec<&str> = schema
            .indexes()
            .iter()
            .flat_map(|i| std::iter::once(i.partition()).chain(i.sort()))
            .map(|k| k.field())
            .collect();
        let mut actions = Vec::with_capacity(patch.actions().len());
        for action in patch.actions() {
            let [Step::Field(field)] = action.path().steps() else {
                return Ok(None);
            };
            if table_keys.contains(&field.as_str())
                || (index_fields.contains(&field.as_str())
                    && !matches!(action, Action::Set(..) | Action::Remove(_)))
            {
                return Ok(None);
            }
            let action = match action {
                Action::Set(_, value) => Fast::Set(field, canonical_value(value)?),
                Action::SetIfAbsent(_, value) => Fast::SetIfAbsent(field, canonical_value(value)?),
                Action::Remove(_) => Fast::Remove(field),
                Action::Add(_, n) => Fast::Add(field, *n),
                Action::Append(_, values) => {
                    Fast::Append(field, canonical_value(&Value::Array(values.clone()))?)
                }
                _ => return Ok(None),
            };
            if action.value().is_some_and(|v| depth(v) > MAX_VALUE_DEPTH) {
                return Ok(None);
            }
            actions.push(action);
        }

        let Some(columns) = self.index_changes(&actions)? else {
            return Ok(None);
        };
        let mut b = self.builder(None);
        b.sql("UPDATE ")
            .sql(&self.table)
            .sql(" SET version = version + 1, document = ");
        new_document(&mut b, &actions);
        for change in &columns {
            change.set(&mut b);
        }
        self.where_key(&mut b, key);
        for change in &columns {
            change.guard(&mut b);
        }
        b.sql(" AND version < ").sql(&MAX_VERSION_SQL);
        if let Some(condition) = condition {
            filter::and_where(
                &mut b,
                condition,
                &storekit_core::table::expr::bytes_fields(schema),
            )?;
        }
        for action in &actions {
            action.guard(&mut b);
        }
        b.sql(" AND octet_length((");
        new_document(&mut b, &actions);
        b.sql(")::text) <= ").bind(Param::Int(
            i64::try_from(MAX_TEXT_BYTES).unwrap_or(i64::MAX),
        ));
        b.sql(" RETURNING version, document");
        let statement = b.finish();
        // Patches are of a few shapes in a service's code, their values bound: the text recurs.
        Ok(Some(statement))
    }
}

impl Layout {
    /// How each query index's columns change under `actions`, as a write of the whole row
    /// would set them (`index_params`: no partition, no entry, so both columns NULL); `None`
    /// when a column's new value cannot be said from the columns and the patch alone.
    fn index_changes(&self, actions: &[Fast<'_>]) -> Result<Option<Vec<ColumnChange>>> {
        let mut changes = Vec::new();
        for (index, columns) in self.schema.indexes().iter().zip(&self.indexes) {
            let partition = touched(actions, index.partition().field(), columns.partition.1)?;
            let sort = match (index.sort(), &columns.sort) {
                (Some(def), Some((_, kind))) => touched(actions, def.field(), *kind)?,
                _ => Touched::No,
            };
            if matches!((&partition, &sort), (Touched::No, Touched::No)) {
                continue;
            }
            let pcol = columns.partition.0.clone();
            let scol = columns.sort.as_ref().map(|(c, _)| c.clone());
            let (new_partition, new_sort, guard) = match partition {
                Touched::Removed => (Value3::Null, scol.as_ref().map(|_| Value3::Null), None),
                Touched::Set(p) => match sort {
                    Touched::Set(s) => (Value3::Bound(p), Some(Value3::Bound(s)), None),
                    Touched::Removed => (Value3::Bound(p), Some(Value3::Null), None),
                    // The sort column holds the document's sort value only while the record
                    // is in the index: the statement is made only then.
                    Touched::No => (Value3::Bound(p), None, Some(pcol.clone())),
                },
                Touched::No => match sort {
                    Touched::Set(s) => (Value3::Keep, Some(Value3::IfIn(s)), None),
                    Touched::Removed => (Value3::Keep, Some(Value3::Null), None),
                    Touched::No => (Value3::Keep, None, None),
                },
            };
            if new_sort.is_some() && scol.is_none() {
                return Ok(None);
            }
            changes.push(ColumnChange {
                partition: (pcol, new_partition),
                sort: scol.zip(new_sort),
                in_index: guard,
            });
        }
        Ok(Some(changes))
    }
}

/// Whether the patch sets or removes one index key field.
enum Touched {
    No,
    Set(Param),
    Removed,
}

fn touched(
    actions: &[Fast<'_>],
    field: &str,
    kind: storekit_core::table::KeyType,
) -> Result<Touched> {
    for action in actions {
        match action {
            Fast::Set(f, value) if *f == field => {
                return Ok(match KeyValue::from_field(kind, field, Some(value))? {
                    Some(key) => Touched::Set(Param::from(&key)),
                    None => Touched::Removed,
                });
            }
            Fast::Remove(f) if *f == field => return Ok(Touched::Removed),
            _ => {}
        }
    }
    Ok(Touched::No)
}

/// A column's value after the patch.
enum Value3 {
    /// As it is.
    Keep,
    /// NULL: the record leaves the index.
    Null,
    /// The value bound.
    Bound(Param),
    /// The value bound if the record is in the index (its partition column is not NULL).
    IfIn(Param),
}

/// The new values of one query index's columns.
struct ColumnChange {
    partition: (String, Value3),
    sort: Option<(String, Value3)>,
    /// A partition column that must not be NULL for the statement to be exact.
    in_index: Option<String>,
}

impl ColumnChange {
    fn set(&self, b: &mut Builder) {
        let (pcol, _) = &self.partition;
        for (column, value) in std::iter::once((&self.partition.0, &self.partition.1))
            .chain(self.sort.as_ref().map(|(c, v)| (c, v)))
        {
            let param = match value {
                Value3::Keep => continue,
                Value3::Null => {
                    b.sql(", ").quoted(column).sql(" = NULL");
                    continue;
                }
                Value3::Bound(p) => {
                    b.sql(", ").quoted(column).sql(" = ").bind(p.clone());
                    continue;
                }
                Value3::IfIn(p) => p,
            };
            b.sql(", ").quoted(column).sql(" = CASE WHEN ").quoted(pcol);
            b.sql(" IS NULL THEN NULL ELSE ")
                .bind(param.clone())
                .sql(" END");
        }
    }

    fn guard(&self, b: &mut Builder) {
        if let Some(column) = &self.in_index {
            b.sql(" AND ").quoted(column).sql(" IS NOT NULL");
        }
    }
}

/// One action the statement makes, its value canonical as a write would store it.
enum Fast<'a> {
    Set(&'a str, Value),
    SetIfAbsent(&'a str, Value),
    Remove(&'a str),
    Add(&'a str, i64),
    Append(&'a str, Value),
}

impl Fast<'_> {
    fn value(&self) -> Option<&Value> {
        match self {
            Self::Set(_, v) | Self::SetIfAbsent(_, v) | Self::Append(_, v) => Some(v),
            Self::Remove(_) | Self::Add(..) => None,
        }
    }

    /// `expression` with the action applied, reading the stored `document`.
    fn wrap(&self, b: &mut Builder, inner: impl FnOnce(&mut Builder)) {
        match self {
            Self::Set(field, value) => {
                b.sql("(");
                inner(b);
                b.sql(" || jsonb_build_object(");
                field_param(b, field);
                b.sql(", ")
                    .bind(Param::Document(value.to_string()))
                    .sql("))");
            }
            // The stored value, when there is one (`null` included), wins.
            Self::SetIfAbsent(field, value) => {
                b.sql("(jsonb_build_object(");
                field_param(b, field);
                b.sql(", ")
                    .bind(Param::Document(value.to_string()))
                    .sql(") || ");
                inner(b);
                b.sql(")");
            }
            Self::Remove(field) => {
                b.sql("(");
                inner(b);
                b.sql(" - ");
                field_param(b, field);
                b.sql(")");
            }
            Self::Add(field, n) => {
                b.sql("(");
                inner(b);
                b.sql(" || jsonb_build_object(");
                field_param(b, field);
                b.sql(", to_jsonb(");
                stored_number(b, field);
                b.sql(" + ").bind(Param::Int(*n)).sql("::numeric)))");
            }
            Self::Append(field, values) => {
                b.sql("(");
                inner(b);
                b.sql(" || jsonb_build_object(");
                field_param(b, field);
                b.sql(", COALESCE(document -> ");
                field_param(b, field);
                b.sql(", '[]'::jsonb) || ")
                    .bind(Param::Document(values.to_string()))
                    .sql("))");
            }
        }
    }

    /// ` AND` the conditions under which `jsonb` gives the reference's answer.
    fn guard(&self, b: &mut Builder) {
        match self {
            Self::Set(..) | Self::SetIfAbsent(..) | Self::Remove(_) => {}
            Self::Add(field, n) => {
                // Nothing there, or an integer, and an integer result: exactly the
                // reference's 64-bit addition.
                b.sql(" AND (document -> ");
                field_param(b, field);
                b.sql(" IS NULL OR (jsonb_typeof(document -> ");
                field_param(b, field);
                b.sql(") = 'number' AND (document ->> ");
                field_param(b, field);
                b.sql(") ~ '^-?[0-9]+$'))");
                b.sql(" AND ");
                stored_number(b, field);
                b.sql(" + ")
                    .bind(Param::Int(*n))
                    .sql("::numeric BETWEEN -9223372036854775808 AND 9223372036854775807");
            }
            Self::Append(field, _) => {
                b.sql(" AND (document -> ");
                field_param(b, field);
                b.sql(" IS NULL OR jsonb_typeof(document -> ");
                field_param(b, field);
                b.sql(") = 'array')");
            }
        }
    }
}

/// The document after every action: each wraps the ones before (their paths never overlap,
/// so the order is the patch's own and no action sees another's result).
fn new_document(b: &mut Builder, actions: &[Fast<'_>]) {
    fn nest(b: &mut Builder, actions: &[Fast<'_>]) {
        match actions.split_last() {
            None => {
                b.sql("document");
            }
            Some((last, rest)) => last.wrap(b, |b| nest(b, rest)),
        }
    }
    nest(b, actions);
}

/// The stored number at `field` as `numeric`, 0 when there is none; never a cast of a text,
/// which would fail the statement rather than its guard.
fn stored_number(b: &mut Builder, field: &str) {
    b.sql("(CASE WHEN jsonb_typeof(document -> ");
    field_param(b, field);
    b.sql(") = 'number' THEN (document ->> ");
    field_param(b, field);
    b.sql(")::numeric ELSE 0 END)");
}

fn field_param(b: &mut Builder, field: &str) {
    b.bind(Param::Text(field.to_owned())).sql("::text");
}

/// How deep `value` nests lists and maps (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
