//! Conditions of the expression language in SQL, for both dialects, values always bound.
//!
//! SQLite answers with its JSON functions only the tests where they agree with the reference
//! by construction, and asks storekit's own evaluator, the memory backend's reference
//! (registered on each connection as `storekit_match(document, spec)`, the spec bound as JSON
//! and parsed once per statement), for every other one. SQLite's JSON functions turn integers
//! past 2^63 into floats, respell numbers inside lists and parse decimal text by their own
//! rounding, so rendering the whole language into them would answer otherwise on exactly the
//! values the rules are about; but the evaluator parses the whole document for every row it
//! tests, several times the cost of a JSON function. So a comparison, `between` or `in` of a
//! path of plain names and indexes with text, or with a number within ±2^63 (an integer
//! within `i64`), and `exists` / `not_exists`, are rendered natively:
//!
//! - the stored value's type is asked first (`json_type`), so a comparison across types is
//!   false (`<>` true) as in the reference, and a missing path is NULL there;
//! - text compares as text under SQLite's BINARY collation, which is the bytes' order;
//! - a stored integer compares with the bound number exactly (SQLite compares an integer and
//!   a float exactly, and a stored integer past 2^63, which `json_extract` reads as a float,
//!   lies beyond every operand rendered natively, so it is ordered right and never equal);
//! - a stored float (whose decimal text SQLite may round otherwise than Rust) is handed to
//!   the evaluator, for that row and that test only.
//!
//! Bytes key fields (base64 text in the document, compared as bytes), `begins_with`,
//! `contains`, `size`, and operands of other types always go to the evaluator.
//!
//! PostgreSQL renders each condition into `jsonb` operators. A path is `document -> field`
//! for a top-level field and a bound strict SQL/JSON path below it, NULL when a step does not
//! exist. Every test is
//! wrapped in `COALESCE(…, false)`, so that a missing path makes a test false, never NULL, and
//! `NOT` then makes it true, as in DynamoDB. Types are checked with `jsonb_typeof` before an
//! ordering, so a comparison across types is false; text compares under `COLLATE "C"`, in
//! byte order; numbers compare as `numeric`, exactly. Bytes key fields are base64 text in the
//! document and are decoded to `bytea` before they are compared.

use storekit_core::table::expr::Step;
use storekit_core::table::{Comparison, Condition, Operand, Path};
use storekit_core::{Error, Result};

use super::{Builder, Dialect, Param};

/// What `storekit_match` receives: the condition and the table's bytes key fields.
#[derive(serde::Serialize)]
struct Spec<'a> {
    c: &'a Condition,
    b: &'a [&'a str],
}

/// Appends ` AND (condition)` to a statement's `WHERE`.
pub(super) fn and_where(
    b: &mut Builder,
    condition: &Condition,
    bytes_fields: &[&str],
) -> Result<()> {
    b.sql(" AND ");
    self::condition(b, condition, bytes_fields)
}

/// Appends `condition` as a boolean expression, never NULL on PostgreSQL (see the module
/// docs) and an integer on SQLite.
pub(super) fn condition(
    b: &mut Builder,
    condition: &Condition,
    bytes_fields: &[&str],
) -> Result<()> {
    match b.dialect {
        Dialect::Sqlite => Sqlite { bytes_fields }.condition(b, condition),
        Dialect::Postgres => Postgres { bytes_fields }.condition(b, condition),
    }
}

/// SQLite: each test natively where the JSON functions agree with the reference, else by the
/// evaluator (see the module docs). Every test is 0 or 1, never NULL, so `NOT` negates it.
struct Sqlite<'a> {
    bytes_fields: &'a [&'a str],
}

/// An operand SQLite compares natively, as bound.
#[derive(Debug, Clone, PartialEq)]
enum Native {
    /// Compared with stored integers natively, with stored floats by the evaluator.
    Number(Param),
    /// Compared with stored text.
    Text(String),
}

impl Native {
    /// The operand, if SQLite compares it as the reference does (see the module docs).
    fn of(operand: &Operand) -> Option<Self> {
        /// 2^63: every float operand below it is rendered natively.
        const BOUND: f64 = 9_223_372_036_854_775_808.0;
        match operand {
            Operand::Json(serde_json::Value::String(text)) => Some(Self::Text(text.clone())),
            Operand::Json(serde_json::Value::Number(number)) => match number.as_i64() {
                Some(int) => Some(Self::Number(Param::Int(int))),
                None if number.is_f64() => number
                    .as_f64()
                    .filter(|f| f.is_finite() && f.abs() < BOUND)
                    .map(|f| Self::Number(Param::Float(f))),
                // An integer past `i64`.
                None => None,
            },
            _ => None,
        }
    }

    fn same_kind(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Self::Number(_), Self::Number(_)) | (Self::Text(_), Self::Text(_))
        )
    }

    fn param(&self) -> Param {
        match self {
            Self::Number(param) => param.clone(),
            Self::Text(text) => Param::Text(text.clone()),
        }
    }
}

impl Sqlite<'_> {
    fn condition(&self, b: &mut Builder, condition: &Condition) -> Result<()> {
        match condition {
            Condition::And(all) => self.join(b, all, " AND ", "1"),
            Condition::Or(any) => self.join(b, any, " OR ", "0"),
            Condition::Not(inner) => {
                b.sql("(NOT ");
                self.condition(b, inner)?;
                b.sql(")");
                Ok(())
            }
            leaf => {
                if !self.native(b, leaf)? {
                    self.evaluated(b, leaf)?;
                }
                Ok(())
            }
        }
    }

    fn join(
        &self,
        b: &mut Builder,
        conditions: &[Condition],
        separator: &str,
        empty: &str,
    ) -> Result<()> {
        if conditions.is_empty() {
            b.sql(empty);
            return Ok(());
        }
        b.sql("(");
        for (i, condition) in conditions.iter().enumerate() {
            if i > 0 {
                b.sql(separator);
            }
            self.condition(b, condition)?;
        }
        b.sql(")");
        Ok(())
    }

    /// `storekit_match(document, spec)`: the reference's answer.
    fn evaluated(&self, b: &mut Builder, condition: &Condition) -> Result<()> {
        let spec = serde_json::to_string(&Spec {
            c: condition,
            b: self.bytes_fields,
        })
        .map_err(|e| Error::invalid("condition", e.to_string()))?;
        b.sql("storekit_match(document, ")
            .bind(Param::Text(spec))
            .sql(")");
        Ok(())
    }

    /// SQLite's JSON path of `path`, when each of its names is plain (ASCII letters, digits
    /// and `_`, which a path never needs to quote) and it is no bytes key field.
    fn json_path(&self, path: &Path) -> Option<String> {
        if path.steps().len() == 1 && self.bytes_fields.contains(&path.field()) {
            return None;
        }
        let mut text = String::from("$");
        for step in path.steps() {
            match step {
                Step::Field(name)
                    if !name.is_empty()
                        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') =>
                {
                    text.push('.');
                    text.push_str(name);
                }
                Step::Field(_) => return None,
                Step::Index(index) => text.push_str(&format!("[{index}]")),
            }
        }
        Some(text)
    }

    /// Renders `leaf` natively if it can be (see the module docs); `false` if not, having
    /// written nothing.
    fn native(&self, b: &mut Builder, leaf: &Condition) -> Result<bool> {
        Ok(match leaf {
            Condition::Exists(path) | Condition::NotExists(path) => {
                let Some(json_path) = self.json_path(path) else {
                    return Ok(false);
                };
                b.sql("(json_type(document, ")
                    .bind(Param::Text(json_path))
                    .sql(")");
                b.sql(if matches!(leaf, Condition::Exists(_)) {
                    " IS NOT NULL)"
                } else {
                    " IS NULL)"
                });
                true
            }
            Condition::Compare { path, op, value } => {
                let (Some(json_path), Some(operand)) = (self.json_path(path), Native::of(value))
                else {
                    return Ok(false);
                };
                // `<>` is the negation of `=`: true across types and where the path is missing.
                let otherwise = if *op == Comparison::Ne { "1" } else { "0" };
                self.typed(b, leaf, &json_path, &operand, otherwise, |b, value| {
                    value(b);
                    b.sql(" ").sql(op.symbol()).sql(" ").bind(operand.param());
                })?;
                true
            }
            Condition::Between { path, low, high } => {
                let (Some(json_path), Some(low), Some(high)) =
                    (self.json_path(path), Native::of(low), Native::of(high))
                else {
                    return Ok(false);
                };
                if !low.same_kind(&high) {
                    return Ok(false);
                }
                self.typed(b, leaf, &json_path, &low, "0", |b, value| {
                    b.sql("(");
                    value(b);
                    b.sql(" >= ").bind(low.param()).sql(" AND ");
                    value(b);
                    b.sql(" <= ").bind(high.param()).sql(")");
                })?;
                true
            }
            Condition::In { path, values } => {
                let Some(json_path) = self.json_path(path) else {
                    return Ok(false);
                };
                let Some(operands) = values.iter().map(Native::of).collect::<Option<Vec<_>>>()
                else {
                    return Ok(false);
                };
                let Some(first) = operands.first() else {
                    return Ok(false);
                };
                if !operands.iter().all(|o| o.same_kind(first)) {
                    return Ok(false);
                }
                self.typed(b, leaf, &json_path, first, "0", |b, value| {
                    value(b);
                    b.sql(" IN (");
                    for (i, operand) in operands.iter().enumerate() {
                        if i > 0 {
                            b.sql(", ");
                        }
                        b.bind(operand.param());
                    }
                    b.sql(")");
                })?;
                true
            }
            _ => false,
        })
    }

    /// `CASE json_type(document, path) WHEN <operand's type> THEN <test> … ELSE otherwise END`,
    /// `test` given the stored value as `json_extract(document, path)`; a stored float, for a
    /// number operand, goes to the evaluator.
    fn typed(
        &self,
        b: &mut Builder,
        leaf: &Condition,
        json_path: &str,
        operand: &Native,
        otherwise: &str,
        test: impl FnOnce(&mut Builder, &dyn Fn(&mut Builder)),
    ) -> Result<()> {
        let value = |b: &mut Builder| {
            b.sql("json_extract(document, ")
                .bind(Param::Text(json_path.to_owned()))
                .sql(")");
        };
        b.sql("(CASE json_type(document, ")
            .bind(Param::Text(json_path.to_owned()))
            .sql(")");
        match operand {
            Native::Text(_) => {
                b.sql(" WHEN 'text' THEN ");
                test(b, &value);
            }
            Native::Number(_) => {
                b.sql(" WHEN 'integer' THEN ");
                test(b, &value);
                b.sql(" WHEN 'real' THEN ");
                self.evaluated(b, leaf)?;
            }
        }
        b.sql(" ELSE ").sql(otherwise).sql(" END)");
        Ok(())
    }
}

struct Postgres<'a> {
    bytes_fields: &'a [&'a str],
}

impl Postgres<'_> {
    fn condition(&self, b: &mut Builder, condition: &Condition) -> Result<()> {
        match condition {
            Condition::And(all) => return self.join(b, all, " AND "),
            Condition::Or(any) => return self.join(b, any, " OR "),
            Condition::Not(inner) => {
                b.sql("(NOT ");
                self.condition(b, inner)?;
                b.sql(")");
                return Ok(());
            }
            _ => {}
        }
        b.sql("COALESCE(");
        self.test(b, condition)?;
        b.sql(", false)");
        Ok(())
    }

    fn join(&self, b: &mut Builder, conditions: &[Condition], separator: &str) -> Result<()> {
        b.sql("(");
        for (i, condition) in conditions.iter().enumerate() {
            if i > 0 {
                b.sql(separator);
            }
            self.condition(b, condition)?;
        }
        b.sql(")");
        Ok(())
    }

    fn is_bytes(&self, path: &Path) -> bool {
        path.steps().len() == 1 && self.bytes_fields.contains(&path.field())
    }

    /// One test, which may be NULL when its path is missing.
    fn test(&self, b: &mut Builder, condition: &Condition) -> Result<()> {
        match condition {
            Condition::Compare { path, op, value } => match (op, value) {
                (Comparison::Eq | Comparison::Ne, _) => {
                    if *op == Comparison::Ne {
                        // `<>` is true when the path is missing: the negation of `=`.
                        b.sql("NOT COALESCE(");
                    }
                    self.equal(b, path, value);
                    if *op == Comparison::Ne {
                        b.sql(", false)");
                    }
                }
                (op, value) => self.ordered(b, path, op.symbol(), value)?,
            },
            Condition::Between { path, low, high } => {
                b.sql("(");
                self.ordered(b, path, ">=", low)?;
                b.sql(" AND ");
                self.ordered(b, path, "<=", high)?;
                b.sql(")");
            }
            Condition::BeginsWith { path, prefix } => match prefix {
                Operand::Bytes(bytes) => {
                    b.sql("position(")
                        .bind(Param::Bytes(bytes.clone()))
                        .sql("::bytea in ");
                    self.bytes_value(b, path);
                    b.sql(") = 1");
                }
                Operand::Json(json) => {
                    b.sql("(jsonb_typeof(");
                    self.value(b, path);
                    b.sql(") = 'string' AND starts_with((");
                    self.value(b, path);
                    b.sql(" #>> '{}') COLLATE \"C\", ")
                        .bind(Param::Text(json.as_str().unwrap_or_default().to_owned()))
                        .sql("::text))");
                }
            },
            Condition::Contains { path, value } => match value {
                Operand::Bytes(bytes) => {
                    b.sql("position(")
                        .bind(Param::Bytes(bytes.clone()))
                        .sql("::bytea in ");
                    self.bytes_value(b, path);
                    b.sql(") > 0");
                }
                Operand::Json(json) => {
                    b.sql("CASE jsonb_typeof(");
                    self.value(b, path);
                    b.sql(") WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(");
                    self.value(b, path);
                    b.sql(") AS e WHERE e = ")
                        .bind(Param::Document(json.to_string()))
                        .sql(")");
                    if let Some(text) = json.as_str() {
                        b.sql(" WHEN 'string' THEN strpos(");
                        self.value(b, path);
                        b.sql(" #>> '{}', ")
                            .bind(Param::Text(text.to_owned()))
                            .sql("::text) > 0");
                    }
                    b.sql(" ELSE false END");
                }
            },
            Condition::Exists(path) => {
                self.value(b, path);
                b.sql(" IS NOT NULL");
            }
            Condition::NotExists(path) => {
                self.value(b, path);
                b.sql(" IS NULL");
            }
            Condition::In { path, values } => {
                b.sql("(");
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        b.sql(" OR ");
                    }
                    b.sql("COALESCE(");
                    self.equal(b, path, value);
                    b.sql(", false)");
                }
                b.sql(")");
            }
            Condition::Size { path, op, size } => {
                // `<>` is the negation of `=`: true where there is no size.
                let negate = *op == Comparison::Ne;
                if negate {
                    b.sql("NOT COALESCE(");
                }
                let op = if negate { Comparison::Eq } else { *op };
                if self.is_bytes(path) {
                    b.sql("length(");
                    self.bytes_value(b, path);
                    b.sql(")");
                } else {
                    // Text is measured in UTF-16 code units, as DynamoDB does: a character
                    // past U+FFFF counts twice.
                    b.sql("CASE jsonb_typeof(");
                    self.value(b, path);
                    b.sql(") WHEN 'string' THEN char_length(");
                    self.value(b, path);
                    b.sql(" #>> '{}') + char_length(regexp_replace(");
                    self.value(b, path);
                    b.sql(" #>> '{}', '[^\\U00010000-\\U0010FFFF]', '', 'g')) WHEN 'array' THEN jsonb_array_length(");
                    self.value(b, path);
                    b.sql(") WHEN 'object' THEN (SELECT count(*) FROM jsonb_object_keys(");
                    self.value(b, path);
                    b.sql(")) END");
                }
                b.sql(" ")
                    .sql(op.symbol())
                    .sql(" ")
                    .bind(Param::Int(i64::try_from(*size).unwrap_or(i64::MAX)));
                if negate {
                    b.sql(", false)");
                }
            }
            other => {
                return Err(Error::invalid(
                    "condition",
                    format!("not supported on SQL: {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `path = value`, NULL when the path is missing.
    fn equal(&self, b: &mut Builder, path: &Path, value: &Operand) {
        match value {
            Operand::Bytes(bytes) => {
                self.bytes_value(b, path);
                b.sql(" = ")
                    .bind(Param::Bytes(bytes.clone()))
                    .sql("::bytea");
            }
            // jsonb equality: numbers by value, lists in order, maps by their fields.
            Operand::Json(json) => {
                self.value(b, path);
                b.sql(" = ").bind(Param::Document(json.to_string()));
            }
        }
    }

    /// `path op value` for a number, text or bytes, false across types.
    fn ordered(&self, b: &mut Builder, path: &Path, op: &str, value: &Operand) -> Result<()> {
        match value {
            Operand::Bytes(bytes) => {
                self.bytes_value(b, path);
                b.sql(" ")
                    .sql(op)
                    .sql(" ")
                    .bind(Param::Bytes(bytes.clone()))
                    .sql("::bytea");
            }
            Operand::Json(json @ serde_json::Value::Number(_)) => {
                b.sql("(jsonb_typeof(");
                self.value(b, path);
                b.sql(") = 'number' AND ");
                self.value(b, path);
                b.sql(" ")
                    .sql(op)
                    .sql(" ")
                    .bind(Param::Document(json.to_string()))
                    .sql(")");
            }
            Operand::Json(serde_json::Value::String(text)) => {
                b.sql("(jsonb_typeof(");
                self.value(b, path);
                b.sql(") = 'string' AND (");
                self.value(b, path);
                b.sql(" #>> '{}') COLLATE \"C\" ")
                    .sql(op)
                    .sql(" ")
                    .bind(Param::Text(text.clone()))
                    .sql("::text)");
            }
            Operand::Json(_) => {
                return Err(Error::invalid(
                    "condition",
                    "an ordering compares numbers, text or bytes",
                ));
            }
        }
        Ok(())
    }

    /// The `jsonb` at `path`, NULL when it is missing.
    ///
    /// A top-level field is `document -> name`. A deeper path is a bound SQL/JSON path in
    /// strict mode, with errors silenced: `->` would read element 0 of a scalar as the scalar
    /// itself, and lax paths would unwrap lists, where DynamoDB finds nothing.
    fn value(&self, b: &mut Builder, path: &Path) {
        if let [Step::Field(name)] = path.steps() {
            b.sql("(document -> ")
                .bind(Param::Text(name.clone()))
                .sql("::text)");
            return;
        }
        let mut text = String::from("strict $");
        for step in path.steps() {
            match step {
                // A JSON string literal is a SQL/JSON path string literal.
                Step::Field(name) => {
                    text.push('.');
                    text.push_str(&serde_json::Value::from(name.as_str()).to_string());
                }
                Step::Index(index) => text.push_str(&format!("[{index}]")),
            }
        }
        b.sql("jsonb_path_query_first(document, ")
            .bind(Param::Text(text))
            .sql("::jsonpath, '{}', true)");
    }

    /// A bytes key field's value as `bytea`, NULL when it is missing or not text.
    fn bytes_value(&self, b: &mut Builder, path: &Path) {
        b.sql("decode(CASE jsonb_typeof(");
        self.value(b, path);
        b.sql(") WHEN 'string' THEN ");
        self.value(b, path);
        b.sql(" #>> '{}' END, 'base64')");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sqlite(condition: &Condition) -> String {
        let mut b = Builder::new(Dialect::Sqlite, None);
        super::condition(&mut b, condition, &["tag"]).expect("renders");
        b.finish().sql.to_string()
    }

    /// The tests SQLite answers with its JSON functions use no evaluator, except for a stored
    /// float; the rest are the evaluator's alone.
    #[test]
    fn sqlite_renders_plain_tests_natively_and_asks_the_evaluator_for_the_rest() {
        let number = sqlite(&Condition::ge("price_cents", 501));
        assert!(number.contains("json_type(document, ?1)"), "{number}");
        assert!(
            number.contains("WHEN 'integer' THEN json_extract"),
            "{number}"
        );
        assert_eq!(
            number.matches("storekit_match").count(),
            1,
            "a stored float: {number}"
        );
        for native in [
            Condition::eq("status", "shipped").and(Condition::exists("m.x")),
            Condition::between("name", "a", "b"),
            Condition::is_in("l[1]", [json!("x"), json!("y")]),
            Condition::not(Condition::not_exists("a")),
        ] {
            let text = sqlite(&native);
            assert!(!text.contains("storekit_match"), "{native:?}: {text}");
        }
        for evaluated in [
            Condition::eq("flag", true),
            Condition::ge("big", json!(u64::MAX)),
            Condition::ge("huge", json!(1e19)),
            Condition::between("n", 1, "z"),
            Condition::begins_with("name", "a"),
            Condition::eq("odd-name", 1),
            Condition::exists("tag"),
        ] {
            let text = sqlite(&evaluated);
            assert!(
                text.starts_with("storekit_match(document, ?1)"),
                "{evaluated:?}: {text}"
            );
        }
    }
}
