//! Conditions of the expression language as DynamoDB expressions: every attribute name and
//! every value a placeholder, so nothing from the caller is ever spelled into the text.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use storekit_core::table::expr::Step;
use storekit_core::table::{Condition, Operand, Path};
use storekit_core::{Error, Result};

use super::{Placeholders, item};

/// `condition` as DynamoDB expression text, its names and values added to `p`.
pub(super) fn render(condition: &Condition, p: &mut Placeholders) -> Result<String> {
    render_in(condition, Precedence::Or, p)
}

/// How tightly a combination binds: DynamoDB refuses parentheses that change nothing, so a
/// combination is parenthesised only inside one that binds more tightly.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    Or,
    And,
    Not,
}

fn render_in(condition: &Condition, outer: Precedence, p: &mut Placeholders) -> Result<String> {
    Ok(match condition {
        Condition::Compare { path, op, value } => {
            let path = self::path(path, p);
            format!("{path} {} {}", op.symbol(), operand(value, p))
        }
        Condition::Between { path, low, high } => {
            let path = self::path(path, p);
            let (low, high) = (operand(low, p), operand(high, p));
            format!("{path} BETWEEN {low} AND {high}")
        }
        Condition::BeginsWith { path, prefix } => {
            let path = self::path(path, p);
            format!("begins_with({path}, {})", operand(prefix, p))
        }
        Condition::Contains { path, value } => {
            let path = self::path(path, p);
            format!("contains({path}, {})", operand(value, p))
        }
        Condition::Exists(path) => format!("attribute_exists({})", self::path(path, p)),
        Condition::NotExists(path) => format!("attribute_not_exists({})", self::path(path, p)),
        Condition::In { path, values } => {
            let path = self::path(path, p);
            let values: Vec<String> = values.iter().map(|v| operand(v, p)).collect();
            format!("{path} IN ({})", values.join(", "))
        }
        Condition::Size { path, op, size } => {
            let path = self::path(path, p);
            let size = p.value(AttributeValue::N(size.to_string()));
            format!("size({path}) {} {size}", op.symbol())
        }
        Condition::And(all) => join(all, Precedence::And, outer, p)?,
        Condition::Or(any) => join(any, Precedence::Or, outer, p)?,
        Condition::Not(inner) => format!("NOT {}", render_in(inner, Precedence::Not, p)?),
        other => {
            return Err(Error::invalid(
                "condition",
                format!("not supported on DynamoDB: {other:?}"),
            ));
        }
    })
}

fn join(
    conditions: &[Condition],
    own: Precedence,
    outer: Precedence,
    p: &mut Placeholders,
) -> Result<String> {
    if let [only] = conditions {
        return render_in(only, outer, p);
    }
    let parts = conditions
        .iter()
        .map(|c| render_in(c, own, p))
        .collect::<Result<Vec<_>>>()?;
    let separator = if own == Precedence::And {
        " AND "
    } else {
        " OR "
    };
    let text = parts.join(separator);
    Ok(if outer > own {
        format!("({text})")
    } else {
        text
    })
}

pub(super) fn path(path: &Path, p: &mut Placeholders) -> String {
    let mut text = String::new();
    for step in path.steps() {
        match step {
            Step::Field(name) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&p.name(name));
            }
            Step::Index(index) => {
                text.push('[');
                text.push_str(&index.to_string());
                text.push(']');
            }
        }
    }
    text
}

fn operand(value: &Operand, p: &mut Placeholders) -> String {
    p.value(match value {
        Operand::Json(json) => item::attribute(json),
        Operand::Bytes(bytes) => AttributeValue::B(Blob::new(bytes.clone())),
    })
}
