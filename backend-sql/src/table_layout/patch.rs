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
//! top-level fields that are no key of the table or of an index; `add` to an integer (or to
//! nothing) with an integer result; `append` to a list (or to nothing); `Returning` other
//! than `Old`. Everything else keeps the locked path, whose cost is three more round trips.
//!
//! SQLite keeps its locked path: its transaction runs in-process, with no round trip to save,
//! and its JSON functions respell numbers (see `filter.rs`).

use serde_json::Value;
use storekit_core::table::expr::Step;
use storekit_core::table::patch::Action;
use storekit_core::table::{Condition, Document, Patch, RecordKey, Returning, canonicalize};
use storekit_core::{Error, Result};

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
        let key_fields = schema.key_fields();
        let mut actions = Vec::with_capacity(patch.actions().len());
        for action in patch.actions() {
            let [Step::Field(field)] = action.path().steps() else {
                return Ok(None);
            };
            if key_fields.iter().any(|(k, _)| k == field) {
                return Ok(None);
            }
            let action = match action {
                Action::Set(_, value) => Fast::Set(field, canonical(value)?),
                Action::SetIfAbsent(_, value) => Fast::SetIfAbsent(field, canonical(value)?),
                Action::Remove(_) => Fast::Remove(field),
                Action::Add(_, n) => Fast::Add(field, *n),
                Action::Append(_, values) => {
                    Fast::Append(field, canonical(&Value::Array(values.clone()))?)
                }
                _ => return Ok(None),
            };
            if action.value().is_some_and(|v| depth(v) > MAX_VALUE_DEPTH) {
                return Ok(None);
            }
            actions.push(action);
        }

        let mut b = self.builder(None);
        b.sql("UPDATE ")
            .sql(&self.table)
            .sql(" SET version = version + 1, document = ");
        new_document(&mut b, &actions);
        self.where_key(&mut b, key);
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

/// `value` as a write stores it (`2.0` as `2`, say), or the reference's refusal.
fn canonical(value: &Value) -> Result<Value> {
    let mut wrapper = Document::new();
    wrapper.insert("v".to_owned(), value.clone());
    canonicalize(&mut wrapper).map_err(|e| match e {
        Error::InvalidInput { why, .. } => Error::invalid("patch", why),
        other => other,
    })?;
    Ok(wrapper.remove("v").unwrap_or(Value::Null))
}

/// How deep `value` nests lists and maps (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
