//! Patches as one `UpdateItem`: every action an update expression clause, the version bumped
//! in the same expression, and the caller's condition joined to the record's existence.
//!
//! A patch that changes a unique-indexed field, on a table with computed keys, is instead read
//! and written at its version with its markers (as `replace` does), again when another write
//! came first: only the whole record can say which markers or computed keys change.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use serde_json::Value;
use storekit_core::table::patch::{Action, patch_row, returned};
use storekit_core::table::{
    Condition, Document, MAX_VERSION, Patch, RecordKey, Returning, TableSchema, next_version,
};
use storekit_core::{Error, Result};

use super::item;
use super::write::Expect;
use super::{Placeholders, filter};
use crate::DynamoDbStore;
use crate::count::Counted as _;
use crate::error;

/// Attempts of a patch made by reading and replacing before a lost race is returned.
const REPLACE_ATTEMPTS: u32 = 100;

/// A patch as one update expression and its condition (the record exists, is below the last
/// version, and `condition` holds), with their placeholders.
pub(super) fn update_parts(
    schema: &TableSchema,
    patch: &Patch,
    condition: Option<&Condition>,
) -> Result<(Placeholders, String, String)> {
    let mut p = Placeholders::default();
    let mut sets = Vec::new();
    let mut removes = Vec::new();
    // DynamoDB adds past the 64-bit range the other backends refuse: each `add` holds only
    // where its sum stays in range, and a refusal is answered by the reference.
    let mut in_range = Vec::new();
    for action in patch.actions() {
        let path = filter::path(action.path(), &mut p);
        match action {
            Action::Set(_, value) => {
                sets.push(format!("{path} = {}", p.value(item::attribute(value))));
            }
            Action::SetIfAbsent(_, value) => {
                let value = p.value(item::attribute(value));
                sets.push(format!("{path} = if_not_exists({path}, {value})"));
            }
            Action::Remove(_) => removes.push(path),
            Action::Add(_, amount) => {
                let zero = p.value(AttributeValue::N("0".into()));
                // The reference's range: `i64::MIN` to `u64::MAX`.
                let amount_wide = i128::from(*amount);
                let bound = match amount.signum() {
                    1 => Some(("<=", i128::from(u64::MAX) - amount_wide)),
                    -1 => Some((">=", i128::from(i64::MIN) - amount_wide)),
                    _ => None,
                };
                if let Some((op, bound)) = bound {
                    let bound = p.value(AttributeValue::N(bound.to_string()));
                    in_range.push(format!(
                        "(attribute_not_exists({path}) OR {path} {op} {bound})"
                    ));
                }
                let amount = p.value(AttributeValue::N(amount.to_string()));
                sets.push(format!("{path} = if_not_exists({path}, {zero}) + {amount}"));
            }
            Action::Append(_, values) => {
                let empty = p.value(AttributeValue::L(Vec::new()));
                let values = p.value(item::attribute(&Value::Array(values.clone())));
                sets.push(format!(
                    "{path} = list_append(if_not_exists({path}, {empty}), {values})"
                ));
            }
            other => {
                return Err(Error::invalid(
                    "patch",
                    format!("not supported on DynamoDB: {other:?}"),
                ));
            }
        }
    }
    let version = p.name(item::version_attribute(schema));
    let (zero, one) = (
        p.value(AttributeValue::N("0".into())),
        p.value(AttributeValue::N("1".into())),
    );
    sets.push(format!(
        "{version} = if_not_exists({version}, {zero}) + {one}"
    ));
    let mut expression = format!("SET {}", sets.join(", "));
    if !removes.is_empty() {
        expression = format!("{expression} REMOVE {}", removes.join(", "));
    }
    let partition = p.name(schema.partition().field());
    let last = p.value(AttributeValue::N(MAX_VERSION.to_string()));
    let mut guard = format!(
        "attribute_exists({partition}) AND (attribute_not_exists({version}) OR {version} < {last})"
    );
    for range in in_range {
        guard = format!("{guard} AND {range}");
    }
    if let Some(condition) = condition {
        guard = format!("{guard} AND ({})", filter::render(condition, &mut p)?);
    }
    Ok((p, expression, guard))
}

impl DynamoDbStore {
    pub(super) async fn patch_record(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        let unique_fields: Vec<&str> = schema
            .uniques()
            .iter()
            .flat_map(|u| u.components().iter().map(|c| c.field()))
            .collect();
        if schema.has_computed_keys() || patch.fields().iter().any(|f| unique_fields.contains(f)) {
            return self
                .patch_by_replace(schema, key, patch, condition, returning)
                .await;
        }
        let table = self.table_name(schema);
        let (p, expression, guard) = update_parts(schema, patch, condition)?;
        let output = self
            .client
            .update_item()
            .table_name(&table)
            .set_key(Some(item::key_item(schema, key)))
            .update_expression(expression)
            .condition_expression(guard)
            .set_expression_attribute_names(p.names())
            .set_expression_attribute_values(p.values())
            .return_values(match returning {
                Returning::Old => ReturnValue::AllOld,
                Returning::New | Returning::UpdatedNew => ReturnValue::AllNew,
                Returning::None => ReturnValue::UpdatedNew,
            })
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send_counted()
            .await;
        let attributes = match output {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(err) => {
                return Err(match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        match failed.item().filter(|i| !i.is_empty()) {
                            None => Error::NotFound { what: "record" },
                            Some(stored) => {
                                let version = item::version_of(schema, stored, &table)?;
                                next_version(version)?;
                                // The reference says why, on the record as it was refused:
                                // the caller's condition, or an `add` it cannot make.
                                let current = item::record(schema, &table, stored)?;
                                match patch_row(schema, &current, patch, condition) {
                                    Err(refused) => refused,
                                    // Only a range guard refused a sum the reference makes
                                    // (one added to a fraction, say): made as it makes it.
                                    Ok(_) => {
                                        return self
                                            .patch_by_replace(
                                                schema, key, patch, condition, returning,
                                            )
                                            .await;
                                    }
                                }
                            }
                        }
                    }
                    // The patch cannot be made on this record: a parent that is missing or of
                    // another type, a number or list that is not one, a limit.
                    Some(service) if service.meta().code() == Some("ValidationException") => {
                        Error::invalid(
                            "patch",
                            service.meta().message().unwrap_or("refused").to_owned(),
                        )
                    }
                    _ => error::sdk(err),
                });
            }
        };
        let stored = item::version_of(schema, &attributes, &table)?;
        let document = match returning {
            Returning::None => None,
            Returning::Old => Some(item::document(schema, &attributes, &table)?),
            Returning::New => Some(item::document(schema, &attributes, &table)?),
            Returning::UpdatedNew => {
                Some(patch.updated(&item::document(schema, &attributes, &table)?))
            }
        };
        let version = match returning {
            Returning::Old => next_version(stored)?,
            _ => stored,
        };
        Ok((version, document))
    }

    /// A patch made by reading the record and replacing it at the version read, markers and
    /// computed keys included; read again when another write came first.
    async fn patch_by_replace(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .get_record(schema, key)
                .await?
                .ok_or(Error::NotFound { what: "record" })?;
            let row = patch_row(schema, &current, patch, condition)?;
            match self
                .write_row(schema, &row, Expect::Version(current.version))
                .await
            {
                Ok(version) => {
                    return Ok((
                        version,
                        returned(patch, returning, Some(&current.document), row.document()),
                    ));
                }
                Err(Error::Conflict { .. } | Error::NotFound { .. })
                    if attempt < REPLACE_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
    }
}
