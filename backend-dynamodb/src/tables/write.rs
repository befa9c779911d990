//! Writes and deletes of records, with their unique markers in the same transaction.
//!
//! A write starts from what it expects (no record, any, or a version) and learns the rest from
//! the database's answers: a refused condition returns the item as stored, which tells an
//! `insert` that the key is taken, a `replace` the version it conflicts with, and a `put` the
//! version to write over and the unique values whose markers move. Nothing is read before a
//! write except by `delete` on a table with unique indexes, which must know the markers to
//! remove, and conditions its delete on the version it read.

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use storekit_core::table::patch::condition_holds;
use storekit_core::table::{
    Condition as DocCondition, KeyValue, Record, RecordKey, Row, TableSchema, next_version,
};
use storekit_core::{Error, Result};

use super::unique::{free_or_held_by, marker_item, marker_key};
use super::{Placeholders, absent, at_version, filter, guarded, item, version_clause};
use crate::DynamoDbStore;
use crate::count::Counted as _;
use crate::error::{self, DynamoError};
use crate::item::Item;
use crate::retry::Backoff;
use crate::txn::{self, Condition, Outcome};

/// Rounds of one write, beyond which it gives up as contended.
const MAX_ROUNDS: u32 = 200;

/// What a write expects to find.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// No record (`insert`).
    Absent,
    /// Anything (`put`).
    Any,
    /// The record at this version (`replace`).
    Version(u64),
    /// Anything, and the record is written at exactly this version (an import).
    At(u64),
}

/// What a write knows of the stored record.
#[derive(Debug)]
enum Known {
    /// Nothing yet: the first attempt guesses.
    Guess,
    /// No record, as a refused write answered.
    Absent,
    /// The record as a refused write answered.
    Stored {
        version: u64,
        uniques: Vec<Option<Vec<KeyValue>>>,
    },
}

impl Known {
    /// The version a write conditioned on: `None` for no record (or a first guess, which
    /// conditions on none).
    fn version(&self) -> Option<u64> {
        match self {
            Self::Guess | Self::Absent => None,
            Self::Stored { version, .. } => Some(*version),
        }
    }
}

/// What each action of a write's transaction is, to read which one a refusal names.
#[derive(Debug, Clone, Copy)]
enum Role {
    Record,
    /// Deletes the record's old marker in this unique index.
    Release(usize),
    /// Puts the record's marker in this unique index.
    Claim(usize),
}

/// The record's unique values are still `uniques` (a record lacking a component of an index
/// holds nothing there, and still lacks one).
fn holding_clauses(
    p: &mut Placeholders,
    schema: &TableSchema,
    uniques: &[Option<Vec<KeyValue>>],
) -> Vec<String> {
    let mut clauses = Vec::new();
    for (index, values) in schema.uniques().iter().zip(uniques) {
        match values {
            Some(values) => {
                for (component, value) in index.components().iter().zip(values) {
                    let name = p.name(component.field());
                    let value = p.value(item::key_value(value));
                    clauses.push(format!("{name} = {value}"));
                }
            }
            None => {
                let lacking: Vec<String> = index
                    .components()
                    .iter()
                    .map(|c| format!("attribute_not_exists({})", p.name(c.field())))
                    .collect();
                clauses.push(format!("({})", lacking.join(" OR ")));
            }
        }
    }
    clauses
}

impl DynamoDbStore {
    /// Writes `row` as `expect` says; returns the version written.
    pub(crate) async fn write_row(
        &self,
        schema: &TableSchema,
        row: &Row,
        expect: Expect,
    ) -> Result<u64> {
        self.write_row_if(schema, row, expect, None, false).await
    }

    /// [`DynamoDbStore::write_row`], and with a `guard`, only if it holds on the record as
    /// stored (on an empty item when there is none): the guard joins the record's condition,
    /// so DynamoDB decides it in the write. With `existing`, a missing record is `NotFound`.
    pub(crate) async fn write_row_if(
        &self,
        schema: &TableSchema,
        row: &Row,
        expect: Expect,
        guard: Option<&DocCondition>,
        existing: bool,
    ) -> Result<u64> {
        let table = self.table_name(schema);
        let no_values = vec![None; schema.uniques().len()];
        let mut known = if existing {
            // Written only over a record: learn its version first, rather than guess that
            // there is none and create it.
            let stored = self.get_item(schema, row.key()).await?;
            self.known(schema, &table, stored.as_ref())?
        } else {
            Known::Guess
        };
        // Indexes whose old marker is held by another record: left alone.
        let mut foreign = vec![false; schema.uniques().len()];
        let mut backoff = Backoff::contention();
        for _ in 0..MAX_ROUNDS {
            if existing && matches!(known, Known::Absent) {
                return Err(Error::NotFound { what: "record" });
            }
            let (condition, version) = match (expect, &known) {
                (Expect::Absent, _) | (Expect::Any, Known::Guess | Known::Absent) => {
                    (absent(schema), 1)
                }
                (Expect::Any, Known::Stored { version, .. }) => {
                    // Checked here, not by a condition: the write is refused before it is
                    // sent, and DynamoDB's numbers would carry on past i64::MAX.
                    (at_version(schema, *version), next_version(*version)?)
                }
                (Expect::At(at), Known::Guess | Known::Absent) => (absent(schema), at),
                (Expect::At(at), Known::Stored { version, .. }) => {
                    (at_version(schema, *version), at)
                }
                // A first guess: the unique values do not change, so no marker moves.
                (Expect::Version(expected), Known::Guess) => {
                    let mut p = Placeholders::default();
                    let mut clauses = vec![version_clause(&mut p, schema, expected)];
                    clauses.extend(holding_clauses(&mut p, schema, row.uniques()));
                    (p.condition(clauses.join(" AND ")), next_version(expected)?)
                }
                (Expect::Version(expected), _) => {
                    (at_version(schema, expected), next_version(expected)?)
                }
            };
            let condition = match guard {
                Some(guard) => guarded(schema, known.version(), guard)?,
                None => condition,
            };
            let old = match (&known, expect) {
                (Known::Stored { uniques, .. }, _) => uniques,
                (Known::Guess, Expect::Version(_)) => row.uniques(),
                _ => &no_values,
            };
            let record = item::record_item(schema, row, version)?;
            let mut roles = vec![Role::Record];
            let mut actions = vec![txn::put(&table, record.clone(), &condition)?];
            for (index, (old, new)) in old.iter().zip(row.uniques()).enumerate() {
                if old == new {
                    continue;
                }
                if let Some(values) = old
                    && !foreign[index]
                {
                    roles.push(Role::Release(index));
                    actions.push(txn::delete(
                        &self.unique_table,
                        marker_key(schema, index, values),
                        &free_or_held_by(row.key()),
                    )?);
                }
                if let Some(values) = new {
                    roles.push(Role::Claim(index));
                    actions.push(txn::put(
                        &self.unique_table,
                        marker_item(schema, index, values, row.key()),
                        &free_or_held_by(row.key()),
                    )?);
                }
            }
            let outcome = if actions.len() == 1 {
                self.put_one(&table, record, &condition).await?
            } else {
                txn::transact(&self.client, actions).await?
            };
            let (index, stored) = match outcome {
                Outcome::Done => return Ok(version),
                Outcome::ConditionFailed { index, item } => (index, item),
            };
            let informed = !matches!(known, Known::Guess);
            if let (Some(guard), Some(Role::Record)) = (guard, roles.get(index)) {
                let now = stored
                    .as_ref()
                    .map(|stored| item::version_of(schema, stored, &table))
                    .transpose()?;
                // The record is as the write expected it: only the guard can have failed.
                if now == known.version() {
                    let version = now.unwrap_or(0);
                    return Err(Error::Conflict {
                        what: "condition",
                        expected: version,
                        actual: version,
                    });
                }
                // Otherwise the record was not as expected (a first guess, or a race); the
                // refusal holds it as it was then, and a guard failing on that is the answer,
                // without a second write.
                match &stored {
                    Some(stored) => {
                        let current = Record {
                            key: row.key().clone(),
                            version: now.unwrap_or(0),
                            document: item::document(schema, stored, &table)?,
                        };
                        condition_holds(schema, Some(&current), guard)?;
                    }
                    None if !existing => condition_holds(schema, None, guard)?,
                    None => {}
                }
            }
            match (roles.get(index).copied(), expect) {
                (Some(Role::Record), Expect::Absent) => {
                    return Err(Error::AlreadyExists { what: "record" });
                }
                (Some(Role::Record), Expect::Version(expected)) => {
                    let stored = stored.ok_or(Error::NotFound { what: "record" })?;
                    let actual = item::version_of(schema, &stored, &table)?;
                    if actual != expected {
                        return Err(Error::Conflict {
                            what: "record",
                            expected,
                            actual,
                        });
                    }
                    // At the version expected, holding other unique values: move them.
                    known = self.known(schema, &table, Some(&stored))?;
                }
                (Some(Role::Record), Expect::Any | Expect::At(_)) => {
                    known = self.known(schema, &table, stored.as_ref())?;
                }
                (Some(Role::Release(index)), _) => {
                    foreign[index] = true;
                    continue;
                }
                (Some(Role::Claim(index)), _) => {
                    let values = row.uniques()[index].as_deref().unwrap_or_default();
                    if self
                        .clear_stale_marker(schema, index, values, stored.as_ref())
                        .await?
                    {
                        continue;
                    }
                    return Err(Error::AlreadyExists {
                        what: "unique value",
                    });
                }
                (None, _) => {
                    return Err(error::bad_item(
                        &table,
                        format!("a write was refused by action {index} of {}", roles.len()),
                    ));
                }
            }
            // A refusal after a guess is how the write learns; after that, a lost race.
            if informed && !backoff.wait().await {
                break;
            }
        }
        Err(DynamoError::Contention {
            attempts: backoff.failures(),
        }
        .into())
    }

    fn known(&self, schema: &TableSchema, table: &str, stored: Option<&Item>) -> Result<Known> {
        Ok(match stored {
            None => Known::Absent,
            Some(stored) => Known::Stored {
                version: item::version_of(schema, stored, table)?,
                uniques: item::unique_values(schema, &item::document(schema, stored, table)?),
            },
        })
    }

    /// A conditional PutItem, answered like a transaction of one action.
    async fn put_one(&self, table: &str, item: Item, condition: &Condition) -> Result<Outcome> {
        let sent = txn::retry_conflicts(|| {
            self.client
                .put_item()
                .table_name(table)
                .set_item(Some(item.clone()))
                .condition_expression(condition.expression())
                .set_expression_attribute_names(condition.names())
                .set_expression_attribute_values(condition.values())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send_counted()
        })
        .await;
        match sent {
            Ok(_) => Ok(Outcome::Done),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(Outcome::ConditionFailed {
                        index: 0,
                        item: refused.item().cloned(),
                    })
                }
                _ => Err(error::sdk(err)),
            },
        }
    }

    /// Deletes a record (at `expected`), with its markers.
    pub(super) async fn delete_record(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
    ) -> Result<bool> {
        self.delete_record_if(schema, key, expected, None).await
    }

    /// [`DynamoDbStore::delete_record`], and with a `guard`, only if it holds on the record
    /// as stored (on an empty item when there is none, and then nothing is deleted).
    pub(super) async fn delete_record_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
        guard: Option<&DocCondition>,
    ) -> Result<bool> {
        let table = self.table_name(schema);
        if schema.uniques().is_empty() {
            let condition = match guard {
                // One DeleteItem under the caller's condition, evaluated by DynamoDB on the
                // item or on an empty one.
                Some(guard) => {
                    let mut p = Placeholders::default();
                    let mut clauses = Vec::new();
                    if let Some(expected) = expected {
                        clauses.push(version_clause(&mut p, schema, expected));
                    }
                    clauses.push(format!("({})", filter::render(guard, &mut p)?));
                    Some(p.condition(clauses.join(" AND ")))
                }
                None => expected.map(|v| at_version(schema, v)),
            };
            return match self
                .delete_one(&table, item::key_item(schema, key), condition.as_ref())
                .await?
            {
                DeleteOutcome::Deleted(deleted) => Ok(deleted),
                DeleteOutcome::Refused(stored) => match (guard, expected) {
                    (Some(_), None) => {
                        let version = stored
                            .as_ref()
                            .map(|stored| item::version_of(schema, stored, &table))
                            .transpose()?
                            .unwrap_or(0);
                        Err(Error::Conflict {
                            what: "condition",
                            expected: version,
                            actual: version,
                        })
                    }
                    _ => Err(refusal(schema, &table, expected, stored)?),
                },
            };
        }
        // The markers to delete are those of the record as stored, so read it first.
        let mut stored = self.get_item(schema, key).await?;
        let mut foreign = vec![false; schema.uniques().len()];
        let mut backoff = Backoff::contention();
        for _ in 0..MAX_ROUNDS {
            let Some(current) = &stored else {
                return match expected {
                    // No record, as a consistent read or a refusal found: the guard is
                    // answered on an empty item, as DynamoDB would.
                    None => guard
                        .map_or(Ok(()), |guard| condition_holds(schema, None, guard))
                        .map(|()| false),
                    Some(_) => Err(Error::NotFound { what: "record" }),
                };
            };
            let version = item::version_of(schema, current, &table)?;
            if let Some(expected) = expected
                && expected != version
            {
                return Err(Error::Conflict {
                    what: "record",
                    expected,
                    actual: version,
                });
            }
            let unchanged = match guard {
                Some(guard) => guarded(schema, Some(version), guard)?,
                None => at_version(schema, version),
            };
            let uniques = item::unique_values(schema, &item::document(schema, current, &table)?);
            let mut actions: Vec<TransactWriteItem> = vec![txn::delete(
                &table,
                item::key_item(schema, key),
                &unchanged,
            )?];
            let mut released = vec![None];
            for (index, values) in uniques.iter().enumerate() {
                if let Some(values) = values
                    && !foreign[index]
                {
                    actions.push(txn::delete(
                        &self.unique_table,
                        marker_key(schema, index, values),
                        &free_or_held_by(key),
                    )?);
                    released.push(Some(index));
                }
            }
            let refused = if actions.len() == 1 {
                match self
                    .delete_one(&table, item::key_item(schema, key), Some(&unchanged))
                    .await?
                {
                    DeleteOutcome::Deleted(_) => return Ok(true),
                    DeleteOutcome::Refused(stored) => (0, stored),
                }
            } else {
                match txn::transact(&self.client, actions).await? {
                    Outcome::Done => return Ok(true),
                    Outcome::ConditionFailed { index, item } => (index, item),
                }
            };
            match released.get(refused.0).copied().flatten() {
                // Another record holds the value this one held: its marker is not ours.
                Some(index) => foreign[index] = true,
                // Still at the version read: the guard does not hold on it.
                None if guard.is_some()
                    && refused
                        .1
                        .as_ref()
                        .map(|stored| item::version_of(schema, stored, &table))
                        .transpose()?
                        == Some(version) =>
                {
                    return Err(Error::Conflict {
                        what: "condition",
                        expected: version,
                        actual: version,
                    });
                }
                // Written or deleted since it was read: the refusal has it as it is now.
                None => {
                    stored = refused.1;
                    if !backoff.wait().await {
                        break;
                    }
                }
            }
        }
        Err(DynamoError::Contention {
            attempts: backoff.failures(),
        }
        .into())
    }

    /// A DeleteItem under an optional condition, returning the deleted item.
    async fn delete_one(
        &self,
        table: &str,
        key: Item,
        condition: Option<&Condition>,
    ) -> Result<DeleteOutcome> {
        let sent = txn::retry_conflicts(|| {
            let request = self
                .client
                .delete_item()
                .table_name(table)
                .set_key(Some(key.clone()))
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            match condition {
                Some(condition) => request
                    .condition_expression(condition.expression())
                    .set_expression_attribute_names(condition.names())
                    .set_expression_attribute_values(condition.values()),
                None => request,
            }
            .send_counted()
        })
        .await;
        match sent {
            Ok(output) => Ok(DeleteOutcome::Deleted(
                output.attributes.is_some_and(|a| !a.is_empty()),
            )),
            Err(err) => match err.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(DeleteOutcome::Refused(refused.item().cloned()))
                }
                _ => Err(error::sdk(err)),
            },
        }
    }
}

/// How a single DeleteItem ended.
enum DeleteOutcome {
    /// Done; whether an item was there.
    Deleted(bool),
    /// The condition was refused; the item as stored, if any.
    Refused(Option<Item>),
}

/// The error of a versioned write refused with `stored` as the item's state.
fn refusal(
    schema: &TableSchema,
    table: &str,
    expected: Option<u64>,
    stored: Option<Item>,
) -> Result<Error> {
    let Some(stored) = stored else {
        return Ok(Error::NotFound { what: "record" });
    };
    let actual = item::version_of(schema, &stored, table)?;
    Ok(match expected {
        Some(expected) => Error::Conflict {
            what: "record",
            expected,
            actual,
        },
        // Only versioned deletes are conditional.
        None => error::bad_item(table, "an unconditional delete was refused"),
    })
}
