//! Conditions on documents: the expression language of filters and conditional writes.
//!
//! A [`Condition`] tests a record's document at [`Path`]s (`status`, `address.city`,
//! `lines[2].sku`). It is checked once, in the layer, against the table's schema and
//! DynamoDB's limits, and then answered the same way by every backend: the memory backend
//! evaluates it ([`Condition::matches`]), the others render it into their database's own
//! language, values always bound, never spliced.
//!
//! The rules are DynamoDB's, as its own server answers them:
//!
//! - A comparison is between values of one type: numbers by value (exactly, `1` equals
//!   `1.0`), text and bytes by their bytes. A comparison across types is false, and so is
//!   any test of a path the document does not have, except `ne`, `not_exists` and `not`,
//!   which are the negations of `eq`, `exists` and the condition.
//! - `lt`, `le`, `gt`, `ge` and `between` take a number, text or bytes; `begins_with` text or
//!   bytes; `contains` a scalar (text in text, bytes in bytes, an element of a list); `eq`,
//!   `ne` and `in` any value, lists and maps compared element by element.
//! - `size` is the length of text (in UTF-16 code units, as DynamoDB counts), bytes, a list
//!   or a map; a number, boolean or `null` has no size, so a size test of it is false, but
//!   for `ne`, as for a missing path.
//! - Bytes exist in a document only as a bytes key field (base64 text in the document, binary
//!   in the database), so a bytes operand is compared with such a field, and such a field only
//!   with bytes.
//!
//! ```
//! use storekit_core::table::{Condition, Query};
//!
//! let open_and_big = Condition::eq("status", "open")
//!     .and(Condition::ge("total_cents", 10_000))
//!     .and(Condition::not_exists("cancelled_at"));
//! let page = Query::table("customer-7").filter(open_and_big).limit(20);
//! ```

use std::cmp::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use super::document::Document;
use super::schema::TableSchema;
use super::value::KeyType;
use crate::{Error, Result};

/// Most terms (comparisons, functions, `and`/`or`/`not`) in one condition.
pub const MAX_CONDITION_TERMS: usize = 100;
/// Most values in one `in`, DynamoDB's limit.
pub const MAX_IN_VALUES: usize = 100;
/// Most steps in one path: DynamoDB's nesting limit.
pub const MAX_PATH_DEPTH: usize = 32;
/// Longest condition, as DynamoDB's expression text with placeholders would spell it: its
/// limit is 4 KB, and what storekit adds to a conditional write is kept free.
const MAX_EXPRESSION_CHARS: usize = 3500;

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Step {
    /// A field of a map (the document itself at the first step).
    Field(String),
    /// An element of a list, from 0.
    Index(usize),
}

/// Where a value sits in a document: a field, then fields of maps and elements of lists.
///
/// Written as text, fields are separated by `.` and list elements follow in brackets:
/// `lines[2].sku`. A field whose name holds `.`, `[`, `]` or `"` is out of reach of the
/// text form and of conditions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Path {
    steps: Vec<Step>,
    /// Why the text did not parse; reported when the condition is checked.
    #[serde(skip)]
    invalid: Option<String>,
}

impl Path {
    /// Parses `a.b[2].c`.
    pub fn parse(text: &str) -> Result<Self> {
        let path = Self::from(text);
        match path.invalid {
            Some(why) => Err(Error::invalid("condition", why)),
            None => Ok(path),
        }
    }

    /// The steps, the first always a field.
    #[must_use]
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The top-level field the path starts at.
    #[must_use]
    pub fn field(&self) -> &str {
        match self.steps.first() {
            Some(Step::Field(name)) => name,
            _ => "",
        }
    }

    /// A path of one field, whatever its name holds.
    pub(crate) fn from_field(name: &str) -> Self {
        Self {
            steps: vec![Step::Field(name.to_owned())],
            invalid: None,
        }
    }

    /// Why the text did not parse, if it did not.
    pub(crate) fn invalid_reason(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    fn check(&self) -> Result<()> {
        if let Some(why) = &self.invalid {
            return Err(Error::invalid("condition", why.clone()));
        }
        Ok(())
    }

    fn parse_steps(text: &str) -> std::result::Result<Vec<Step>, String> {
        let bad = |why: &str| format!("path {text:?}: {why}");
        let mut steps = Vec::new();
        for (n, part) in text.split('.').enumerate() {
            let (name, mut rest) = match part.find('[') {
                Some(at) => part.split_at(at),
                None => (part, ""),
            };
            if name.is_empty() {
                return Err(bad("a field name is empty"));
            }
            if name.contains([']', '"', '\0']) {
                return Err(bad("a field name holds `]`, `\"` or NUL"));
            }
            if n == 0 && name.starts_with(super::RESERVED_FIELD_PREFIX) {
                return Err(bad("the field is storekit's own"));
            }
            steps.push(Step::Field(name.to_owned()));
            while let Some(inner) = rest.strip_prefix('[') {
                let Some((digits, after)) = inner.split_once(']') else {
                    return Err(bad("a `[` is not closed"));
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("a list index is not a number"));
                }
                let index = digits
                    .parse()
                    .map_err(|_| bad("a list index is too large"))?;
                steps.push(Step::Index(index));
                rest = after;
            }
            if !rest.is_empty() {
                return Err(bad("text after `]`"));
            }
        }
        if steps.len() > MAX_PATH_DEPTH {
            return Err(bad(&format!("deeper than {MAX_PATH_DEPTH} steps")));
        }
        Ok(steps)
    }
}

impl From<&str> for Path {
    fn from(text: &str) -> Self {
        match Self::parse_steps(text) {
            Ok(steps) => Self {
                steps,
                invalid: None,
            },
            Err(why) => Self {
                steps: Vec::new(),
                invalid: Some(why),
            },
        }
    }
}

impl From<String> for Path {
    fn from(text: String) -> Self {
        Self::from(text.as_str())
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, step) in self.steps.iter().enumerate() {
            match step {
                Step::Field(name) if n == 0 => f.write_str(name)?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A value a condition compares with: any JSON value, or bytes (for a bytes key field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operand {
    /// A JSON value, as a document holds it.
    Json(Value),
    /// Bytes, compared with a bytes key field.
    Bytes(#[serde(with = "super::value::base64_bytes")] Vec<u8>),
}

impl Operand {
    /// A bytes operand.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self::Bytes(bytes.into())
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Json(value) => Kind::of(value),
            Self::Bytes(_) => Kind::Bytes,
        }
    }

    /// The operand as a value of a document (bytes as base64 text).
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::Json(value) => value.clone(),
            Self::Bytes(bytes) => Value::String(STANDARD.encode(bytes)),
        }
    }
}

macro_rules! operand_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Operand {
            fn from(value: $t) -> Self {
                Self::Json(Value::from(value))
            }
        }
    )*};
}
operand_from!(
    i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64, bool, &str, String
);

impl From<Value> for Operand {
    fn from(value: Value) -> Self {
        Self::Json(value)
    }
}

/// How a value compares with an operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    /// `=`
    Eq,
    /// `<>`: true also when the types differ or the path is missing.
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Comparison {
    /// The operator as DynamoDB and SQL spell it.
    #[must_use]
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq => ordering.is_eq(),
            Self::Ne => ordering.is_ne(),
            Self::Lt => ordering.is_lt(),
            Self::Le => ordering.is_le(),
            Self::Gt => ordering.is_gt(),
            Self::Ge => ordering.is_ge(),
        }
    }
}

/// A condition on a document. Build it with the functions below and combine with
/// [`Condition::and`], [`Condition::or`] and [`Condition::not`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Condition {
    /// `path op value`.
    Compare {
        /// Where.
        path: Path,
        /// How.
        op: Comparison,
        /// With what.
        value: Operand,
    },
    /// `low <= path <= high`.
    Between {
        /// Where.
        path: Path,
        /// The low bound, included.
        low: Operand,
        /// The high bound, included.
        high: Operand,
    },
    /// Text or bytes starting with `prefix`.
    BeginsWith {
        /// Where.
        path: Path,
        /// The prefix.
        prefix: Operand,
    },
    /// Text holding `value` as a substring, bytes holding it as a subsequence, or a list
    /// holding it as an element.
    Contains {
        /// Where.
        path: Path,
        /// What.
        value: Operand,
    },
    /// The path exists (a `null` exists).
    Exists(Path),
    /// The path does not exist.
    NotExists(Path),
    /// Equal to one of the values.
    In {
        /// Where.
        path: Path,
        /// The values, 1 to [`MAX_IN_VALUES`].
        values: Vec<Operand>,
    },
    /// The size of the value compared with `size`.
    Size {
        /// Where.
        path: Path,
        /// How.
        op: Comparison,
        /// With what.
        size: u64,
    },
    /// Every condition holds (at least one condition).
    And(Vec<Condition>),
    /// One of the conditions holds (at least one condition).
    Or(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    fn compare(path: impl Into<Path>, op: Comparison, value: impl Into<Operand>) -> Self {
        Self::Compare {
            path: path.into(),
            op,
            value: value.into(),
        }
    }

    /// `path = value`.
    pub fn eq(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::compare(path, Comparison::Eq, value)
    }

    /// `path <> value`.
    pub fn ne(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::compare(path, Comparison::Ne, value)
    }

    /// `path < value`.
    pub fn lt(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::compare(path, Comparison::Lt, value)
    }

    /// `path <= value`.
    pub fn le(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::compare(path, Comparison::Le, value)
    }

    /// `path > value`.
    pub fn gt(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::compare(path, Comparison::Gt, value)
    }

    /// `path >= value`.
    pub fn ge(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::compare(path, Comparison::Ge, value)
    }

    /// `low <= path <= high`.
    pub fn between(
        path: impl Into<Path>,
        low: impl Into<Operand>,
        high: impl Into<Operand>,
    ) -> Self {
        Self::Between {
            path: path.into(),
            low: low.into(),
            high: high.into(),
        }
    }

    /// Text or bytes at `path` start with `prefix`.
    pub fn begins_with(path: impl Into<Path>, prefix: impl Into<Operand>) -> Self {
        Self::BeginsWith {
            path: path.into(),
            prefix: prefix.into(),
        }
    }

    /// Text at `path` holds `value`, or a list at `path` holds it as an element.
    pub fn contains(path: impl Into<Path>, value: impl Into<Operand>) -> Self {
        Self::Contains {
            path: path.into(),
            value: value.into(),
        }
    }

    /// The document has `path` (holding anything, `null` included).
    pub fn exists(path: impl Into<Path>) -> Self {
        Self::Exists(path.into())
    }

    /// The document does not have `path`.
    pub fn not_exists(path: impl Into<Path>) -> Self {
        Self::NotExists(path.into())
    }

    /// `path` equals one of `values`.
    pub fn is_in<V: Into<Operand>>(
        path: impl Into<Path>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self::In {
            path: path.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// The size of the value at `path` (see the module docs) compared with `size`.
    pub fn size(path: impl Into<Path>, op: Comparison, size: u64) -> Self {
        Self::Size {
            path: path.into(),
            op,
            size,
        }
    }

    /// Both this and `other`.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        match self {
            Self::And(mut all) => {
                all.push(other);
                Self::And(all)
            }
            first => Self::And(vec![first, other]),
        }
    }

    /// This or `other`.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        match self {
            Self::Or(mut any) => {
                any.push(other);
                Self::Or(any)
            }
            first => Self::Or(vec![first, other]),
        }
    }

    /// The negation of `condition`.
    #[must_use]
    #[allow(clippy::should_implement_trait)]
    pub fn not(condition: Self) -> Self {
        Self::Not(Box::new(condition))
    }

    /// Checks the condition against the table's schema and the limits every backend keeps:
    /// valid paths, operand types the operator takes, bytes only with bytes key fields,
    /// at most [`MAX_CONDITION_TERMS`] terms and [`MAX_IN_VALUES`] values in an `in`, and a
    /// length DynamoDB accepts. [`Error::InvalidInput`] (`"condition"`) says what is wrong.
    pub fn check(&self, schema: &TableSchema) -> Result<()> {
        let bytes_fields = bytes_fields(schema);
        let mut budget = Budget::default();
        self.check_in(&bytes_fields, &mut budget)?;
        let mut on_version = Ok(());
        self.visit_paths(&mut |path| {
            if on_version.is_ok() {
                on_version = schema.check_not_version("condition", path.field());
            }
        });
        on_version?;
        if budget.terms > MAX_CONDITION_TERMS {
            return Err(Error::invalid(
                "condition",
                format!(
                    "{} terms, over the limit of {MAX_CONDITION_TERMS}",
                    budget.terms
                ),
            ));
        }
        if budget.chars > MAX_EXPRESSION_CHARS {
            return Err(Error::invalid(
                "condition",
                "longer than DynamoDB's 4 KB expression limit allows",
            ));
        }
        Ok(())
    }

    fn check_in(&self, bytes_fields: &[&str], budget: &mut Budget) -> Result<()> {
        budget.terms += 1;
        let bad = |why: String| Err(Error::invalid("condition", why));
        match self {
            Self::Compare { path, op, value } => {
                budget.leaf(path, 1);
                check_operand(path, value, bytes_fields)?;
                if !matches!(op, Comparison::Eq | Comparison::Ne) && !value.kind().is_ordered() {
                    return bad(format!(
                        "{} compares numbers, text or bytes, not {}",
                        op.symbol(),
                        value.kind().name()
                    ));
                }
            }
            Self::Between { path, low, high } => {
                budget.leaf(path, 2);
                check_operand(path, low, bytes_fields)?;
                check_operand(path, high, bytes_fields)?;
                if !low.kind().is_ordered() || low.kind() != high.kind() {
                    return bad(
                        "between takes two numbers, two texts or two byte strings".to_owned()
                    );
                }
                if compare_operands(low, high) == Some(Ordering::Greater) {
                    return bad("between's low bound is above its high bound".to_owned());
                }
            }
            Self::BeginsWith { path, prefix } => {
                budget.leaf(path, 1);
                check_operand(path, prefix, bytes_fields)?;
                if !matches!(prefix.kind(), Kind::Text | Kind::Bytes) {
                    return bad("begins_with takes text or bytes".to_owned());
                }
            }
            Self::Contains { path, value } => {
                budget.leaf(path, 1);
                check_operand(path, value, bytes_fields)?;
                if matches!(value.kind(), Kind::List | Kind::Map) {
                    return bad(
                        "contains takes a scalar: text, a number, bytes, a boolean or null"
                            .to_owned(),
                    );
                }
            }
            Self::Exists(path) | Self::NotExists(path) => budget.leaf(path, 0),
            Self::In { path, values } => {
                budget.leaf(path, values.len());
                if values.is_empty() || values.len() > MAX_IN_VALUES {
                    return bad(format!(
                        "in takes 1 to {MAX_IN_VALUES} values, not {}",
                        values.len()
                    ));
                }
                for value in values {
                    check_operand(path, value, bytes_fields)?;
                }
            }
            Self::Size { path, .. } => budget.leaf(path, 1),
            Self::And(all) | Self::Or(all) => {
                if all.is_empty() {
                    return bad("`and` or `or` of no conditions".to_owned());
                }
                budget.chars += 6 * all.len();
                for condition in all {
                    condition.check_in(bytes_fields, budget)?;
                }
            }
            Self::Not(condition) => {
                budget.chars += 6;
                condition.check_in(bytes_fields, budget)?;
            }
        }
        Ok(())
    }

    /// Whether `document` meets the condition, in a table whose bytes key fields are
    /// `bytes_fields` (see [`bytes_fields`]): the reference every backend agrees with.
    #[must_use]
    pub fn matches(&self, document: &Document, bytes_fields: &[&str]) -> bool {
        let at = |path: &Path| resolve(document, path, bytes_fields);
        match self {
            Self::Compare { path, op, value } => match (at(path), op) {
                (None, Comparison::Ne) => true,
                (None, _) => false,
                (Some(found), Comparison::Eq) => equal(&found, value),
                (Some(found), Comparison::Ne) => !equal(&found, value),
                (Some(found), op) => compare(&found, value).is_some_and(|o| op.holds(o)),
            },
            Self::Between { path, low, high } => at(path).is_some_and(|found| {
                compare(&found, low).is_some_and(Ordering::is_ge)
                    && compare(&found, high).is_some_and(Ordering::is_le)
            }),
            Self::BeginsWith { path, prefix } => {
                at(path).is_some_and(|found| match (&found, prefix) {
                    (Found::Json(Value::String(text)), Operand::Json(Value::String(p))) => {
                        text.as_bytes().starts_with(p.as_bytes())
                    }
                    (Found::Bytes(bytes), Operand::Bytes(p)) => bytes.starts_with(p),
                    _ => false,
                })
            }
            Self::Contains { path, value } => at(path).is_some_and(|found| match (&found, value) {
                (Found::Json(Value::String(text)), Operand::Json(Value::String(part))) => {
                    text.contains(part.as_str())
                }
                (Found::Bytes(bytes), Operand::Bytes(part)) => {
                    part.is_empty() || bytes.windows(part.len()).any(|w| w == part.as_slice())
                }
                (Found::Json(Value::Array(items)), _) => items
                    .iter()
                    .any(|item| equal(&Found::Json(item.clone()), value)),
                _ => false,
            }),
            Self::Exists(path) => at(path).is_some(),
            Self::NotExists(path) => at(path).is_none(),
            Self::In { path, values } => {
                at(path).is_some_and(|found| values.iter().any(|value| equal(&found, value)))
            }
            Self::Size { path, op, size } => match at(path).and_then(|found| found.size()) {
                Some(found) => op.holds(found.cmp(size)),
                // As for comparisons, `<>` is the negation of `=`.
                None => *op == Comparison::Ne,
            },
            Self::And(all) => all.iter().all(|c| c.matches(document, bytes_fields)),
            Self::Or(any) => any.iter().any(|c| c.matches(document, bytes_fields)),
            Self::Not(condition) => !condition.matches(document, bytes_fields),
        }
    }

    /// Calls `visit` with every path the condition reads.
    pub fn visit_paths(&self, visit: &mut impl FnMut(&Path)) {
        match self {
            Self::Compare { path, .. }
            | Self::Between { path, .. }
            | Self::BeginsWith { path, .. }
            | Self::Contains { path, .. }
            | Self::Exists(path)
            | Self::NotExists(path)
            | Self::In { path, .. }
            | Self::Size { path, .. } => visit(path),
            Self::And(all) | Self::Or(all) => all.iter().for_each(|c| c.visit_paths(visit)),
            Self::Not(condition) => condition.visit_paths(visit),
        }
    }
}

/// The top-level fields that hold bytes keys in `schema`: base64 text in documents, binary in
/// the database, and compared as bytes.
#[must_use]
pub fn bytes_fields(schema: &TableSchema) -> Vec<&str> {
    schema
        .key_fields()
        .into_iter()
        .filter(|(_, kind)| *kind == KeyType::Bytes)
        .map(|(field, _)| field)
        .collect()
}

/// The length of a condition as DynamoDB text with placeholders, erring large.
#[derive(Default)]
struct Budget {
    terms: usize,
    chars: usize,
}

impl Budget {
    fn leaf(&mut self, path: &Path, values: usize) {
        // `function(#a.#b[2], :v1)`: a placeholder per field, the index digits, a value
        // placeholder per operand, and the operator or function name.
        let steps: usize = path
            .steps()
            .iter()
            .map(|step| match step {
                Step::Field(_) => 6,
                Step::Index(index) => 3 + index.to_string().len(),
            })
            .sum();
        self.chars += 22 + steps + 6 * values;
    }
}

fn check_operand(path: &Path, value: &Operand, bytes_fields: &[&str]) -> Result<()> {
    path.check()?;
    let is_bytes_field = path.steps().len() == 1 && bytes_fields.contains(&path.field());
    match value {
        Operand::Bytes(_) if !is_bytes_field => Err(Error::invalid(
            "condition",
            format!("{path} is not a bytes key field, and only those hold bytes"),
        )),
        Operand::Json(_) if is_bytes_field => Err(Error::invalid(
            "condition",
            format!("{path} is a bytes key field: compare it with bytes"),
        )),
        Operand::Json(json) => check_json_operand(json),
        Operand::Bytes(_) => Ok(()),
    }
}

/// An operand follows the document rules (numbers in DynamoDB's range, no NUL, nesting), so
/// that every backend can hold it; its numbers compare by value, so `2.0` finds `2`.
fn check_json_operand(value: &Value) -> Result<()> {
    let mut wrapper = serde_json::Map::new();
    wrapper.insert("v".to_owned(), value.clone());
    crate::validate::normalize_json("condition", &mut wrapper)
}

/// The types a value can have, for the type rules of comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    Text,
    Bytes,
    List,
    Map,
}

impl Kind {
    fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Bool,
            Value::Number(_) => Self::Number,
            Value::String(_) => Self::Text,
            Value::Array(_) => Self::List,
            Value::Object(_) => Self::Map,
        }
    }

    fn is_ordered(self) -> bool {
        matches!(self, Self::Number | Self::Text | Self::Bytes)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::Text => "text",
            Self::Bytes => "bytes",
            Self::List => "a list",
            Self::Map => "a map",
        }
    }
}

/// A value found at a path.
enum Found {
    Json(Value),
    Bytes(Vec<u8>),
}

impl Found {
    fn size(&self) -> Option<u64> {
        let size = match self {
            Self::Json(Value::String(text)) => text.encode_utf16().count(),
            Self::Json(Value::Array(items)) => items.len(),
            Self::Json(Value::Object(fields)) => fields.len(),
            Self::Bytes(bytes) => bytes.len(),
            Self::Json(_) => return None,
        };
        u64::try_from(size).ok()
    }
}

fn resolve(document: &Document, path: &Path, bytes_fields: &[&str]) -> Option<Found> {
    let mut steps = path.steps().iter();
    let Some(Step::Field(first)) = steps.next() else {
        return None;
    };
    let mut value = document.get(first)?;
    if path.steps().len() == 1 && bytes_fields.contains(&first.as_str()) {
        return match value {
            Value::String(text) => STANDARD.decode(text).ok().map(Found::Bytes),
            _ => None,
        };
    }
    for step in steps {
        value = match (step, value) {
            (Step::Field(name), Value::Object(fields)) => fields.get(name)?,
            (Step::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(Found::Json(value.clone()))
}

fn equal(found: &Found, operand: &Operand) -> bool {
    match (found, operand) {
        (Found::Bytes(a), Operand::Bytes(b)) => a == b,
        (Found::Json(a), Operand::Json(b)) => json_equal(a, b),
        _ => false,
    }
}

/// Equality of JSON values by DynamoDB's rules: numbers by value, lists in order, maps by
/// their fields.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The order of two values of one ordered type; `None` across types.
fn compare(found: &Found, operand: &Operand) -> Option<Ordering> {
    match (found, operand) {
        (Found::Bytes(a), Operand::Bytes(b)) => Some(a.cmp(b)),
        (Found::Json(Value::Number(a)), Operand::Json(Value::Number(b))) => {
            Some(compare_numbers(a, b))
        }
        (Found::Json(Value::String(a)), Operand::Json(Value::String(b))) => {
            Some(a.as_bytes().cmp(b.as_bytes()))
        }
        _ => None,
    }
}

fn compare_operands(a: &Operand, b: &Operand) -> Option<Ordering> {
    match a {
        Operand::Json(value) => compare(&Found::Json(value.clone()), b),
        Operand::Bytes(bytes) => compare(&Found::Bytes(bytes.clone()), b),
    }
}

/// Compares two JSON numbers exactly, integers and floats alike, as DynamoDB compares its
/// decimal numbers.
pub(crate) fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => compare_int_float(x, b.as_f64().unwrap_or(0.0)),
        (None, Some(y)) => compare_int_float(y, a.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// An integer against a finite float, exactly: by the float's integral part, then its
/// fraction.
fn compare_int_float(int: i128, float: f64) -> Ordering {
    // Every i64 and u64 lies within ±2^64; a float beyond that decides alone.
    const BOUND: f64 = 18_446_744_073_709_551_616.0;
    if float >= BOUND {
        return Ordering::Less;
    }
    if float <= -BOUND {
        return Ordering::Greater;
    }
    let whole = float.trunc();
    // Within ±2^64 a float's integral part converts to i128 exactly.
    #[allow(clippy::cast_possible_truncation)]
    let whole_int = whole as i128;
    match int.cmp(&whole_int) {
        Ordering::Equal => 0.0f64
            .partial_cmp(&(float - whole))
            .unwrap_or(Ordering::Equal),
        other => other,
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

    fn sample() -> Document {
        doc(json!({
            "id": "x", "n": 5, "s": "héllo", "e": "a😀", "l": [1, "a"], "m": {"k": 1},
            "b": true, "z": null, "big": 9_007_199_254_740_993_u64, "f": 2.5,
            "bin": "AAEC",
        }))
    }

    /// The answers DynamoDB Local gave to the same conditions on the same item.
    #[test]
    fn answers_match_dynamodb_local() {
        let d = sample();
        let bytes = ["bin"];
        let cases: Vec<(Condition, bool)> = vec![
            (Condition::ne("nope", 1), true),
            (Condition::ne("n", "5"), true),
            (Condition::lt("n", "5"), false),
            (Condition::eq("n", "5"), false),
            (Condition::not(Condition::eq("nope", 1)), true),
            (Condition::size("s", Comparison::Eq, 5), true),
            (Condition::size("e", Comparison::Eq, 3), true),
            (Condition::size("l", Comparison::Eq, 2), true),
            (Condition::size("m", Comparison::Eq, 1), true),
            (Condition::size("n", Comparison::Eq, 1), false),
            (Condition::size("n", Comparison::Ne, 1), true),
            (Condition::size("nope", Comparison::Ne, 0), true),
            (Condition::size("nope", Comparison::Ge, 0), false),
            (Condition::contains("l", 1), true),
            (Condition::contains("l", "a"), true),
            (Condition::contains("s", "ll"), true),
            (Condition::contains("n", 5), false),
            (Condition::eq("l", json!([1, "a"])), true),
            (Condition::eq("m", json!({"k": 1})), true),
            (Condition::eq("m", json!({})), false),
            (Condition::eq("b", true), true),
            (Condition::eq("z", Value::Null), true),
            (Condition::ne("z", Value::Null), false),
            (Condition::exists("z"), true),
            (Condition::gt("big", 9_007_199_254_740_992_u64), true),
            (Condition::is_in("n", ["5".into(), Operand::from(5)]), true),
            (Condition::between("n", "1", "9"), false),
            (Condition::begins_with("s", "h"), true),
            (Condition::begins_with("l", "a"), false),
            (Condition::lt("bin", Operand::bytes([0, 1, 3])), true),
            (Condition::begins_with("bin", Operand::bytes([0])), true),
            (Condition::contains("bin", Operand::bytes([1])), true),
            (Condition::eq("l[1]", "a"), true),
            (Condition::ne("l[5]", "a"), true),
            (Condition::eq("m.k", 1), true),
            (Condition::ne("s.k", 1), true),
            (Condition::size("bin", Comparison::Eq, 3), true),
            (Condition::lt("z", 1), false),
            (Condition::gt("s", "h"), true),
            (Condition::gt("e", "a\u{ffff}"), true),
            (Condition::gt("f", 2), true),
            (Condition::lt("f", 3), true),
            (Condition::eq("f", 2.5), true),
            (Condition::eq("n", 5.0), true),
            (Condition::eq("l", json!([1.0, "a"])), true),
        ];
        for (condition, expected) in cases {
            assert_eq!(condition.matches(&d, &bytes), expected, "{condition:?}");
        }
    }

    #[test]
    fn checks_refuse_what_dynamodb_refuses() {
        let schema = TableSchema::builder("things", KeyDef::text("id"))
            .index("by-bin", KeyDef::bytes("bin"), None)
            .build()
            .expect("schema");
        for bad in [
            Condition::lt("l", json!([1])),
            Condition::lt("b", true),
            Condition::between("n", 9, 1),
            Condition::between("n", "1", 9),
            Condition::begins_with("n", 5),
            Condition::contains("l", json!([1])),
            Condition::is_in("n", Vec::<Operand>::new()),
            Condition::is_in("n", (0..101).map(Operand::from)),
            Condition::eq("bin", "AAEC"),
            Condition::eq("s", Operand::bytes([1])),
            Condition::eq("a..b", 1),
            Condition::eq("a[x]", 1),
            Condition::eq("a[1", 1),
            Condition::eq("_storekit_version", 1),
            Condition::eq("n", 1e200),
            Condition::eq("s", "a\0b"),
            Condition::And(Vec::new()),
            Condition::not(Condition::Or(Vec::new())),
        ] {
            assert!(
                matches!(
                    bad.check(&schema),
                    Err(Error::InvalidInput {
                        what: "condition",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let mut long = Condition::eq("a", 1);
        for i in 0..MAX_CONDITION_TERMS {
            long = long.and(Condition::eq(format!("f{i}"), i));
        }
        assert!(long.check(&schema).is_err());
        let fine = Condition::eq("m.k[3].x", 1)
            .and(Condition::le("bin", Operand::bytes([9])))
            .or(Condition::not(Condition::exists("z")));
        fine.check(&schema).expect("valid");
    }

    #[test]
    fn paths_parse_and_print() {
        let path = Path::parse("lines[2][0].sku").expect("path");
        assert_eq!(
            path.steps(),
            [
                Step::Field("lines".into()),
                Step::Index(2),
                Step::Index(0),
                Step::Field("sku".into())
            ]
        );
        assert_eq!(path.to_string(), "lines[2][0].sku");
        assert!(Path::parse("").is_err());
        assert!(Path::parse("a.").is_err());
        assert!(Path::parse("a]").is_err());
        assert!(Path::parse("a[1]x").is_err());
    }

    #[test]
    fn numbers_compare_exactly_across_integers_and_floats() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => Number::from(0),
        };
        let cases = [
            (
                json!(9_007_199_254_740_993_i64),
                json!(9_007_199_254_740_992.0),
                Ordering::Greater,
            ),
            (json!(1), json!(1.5), Ordering::Less),
            (json!(-1), json!(-1.5), Ordering::Greater),
            (json!(u64::MAX), json!(1e30), Ordering::Less),
            (json!(i64::MIN), json!(-1e30), Ordering::Greater),
            (json!(2.5), json!(2.25), Ordering::Greater),
            (json!(u64::MAX), json!(i64::MAX), Ordering::Greater),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                compare_numbers(&n(a.clone()), &n(b.clone())),
                expected,
                "{a} {b}"
            );
            assert_eq!(compare_numbers(&n(b), &n(a)), expected.reverse());
        }
    }
}
