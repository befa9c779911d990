//! Transactions as one `TransactWriteItems`, with a `ClientRequestToken` per set of actions.
//!
//! Each step becomes one action on its record, with the unique markers it moves:
//!
//! - a put is first sent as if there were no record (as `put` does); a refusal returns the
//!   record, whose version and unique values the next attempt is conditioned on;
//! - a patch is an `Update` with the same expression as `patch` (or, when it moves markers or
//!   computed keys, a read and a put at the version read);
//! - a delete is a `Delete` under the caller's condition (read first on a table with unique
//!   indexes, whose markers it must release);
//! - a check is a `ConditionCheck`.
//!
//! The caller's condition is part of the action's condition, so DynamoDB decides it in the
//! write. A refusal returns the item as it was, and the step's own error comes from it: the
//! caller's condition failed on it, or the record was not as the attempt assumed and the
//! transaction is built again from what was learnt.

use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use storekit_core::table::patch::{condition_holds, patch_row};
use storekit_core::table::transact::{Op, Resolved, Step, failed};
use storekit_core::table::{
    Condition as DocCondition, KeyValue, Record, Row, TableSchema, next_version,
};
use storekit_core::time::now_seconds;
use storekit_core::{Error, Result};

use super::unique::{free_or_held_by, marker_item, marker_key};
use super::{Placeholders, absent, at_version, filter, guarded, item, patch};
use crate::DynamoDbStore;
use crate::error::{self, DynamoError};
use crate::item::Item;
use crate::retry::Backoff;
use crate::txn::{self, Condition, Outcome};

/// Attempts of one transaction, beyond which it gives up as contended.
const MAX_ROUNDS: u32 = 100;

/// What an attempt knows of a step's record.
#[derive(Debug, Clone)]
enum Known {
    /// Nothing: a put guesses there is no record; the others need not know.
    Guess,
    /// No record.
    Absent,
    /// The record, as read or returned by a refusal.
    Stored(Record),
}

impl Known {
    fn version(&self) -> Option<u64> {
        match self {
            Self::Guess | Self::Absent => None,
            Self::Stored(record) => Some(record.version),
        }
    }

    fn record(&self) -> Option<&Record> {
        match self {
            Self::Stored(record) => Some(record),
            _ => None,
        }
    }
}

/// The first step that claims a unique value another step holds at that point: one a later
/// step's record releases, or one an earlier step claimed. The actions apply in order (as on
/// every other backend), so such a claim fails; only a release before the claim is one marker
/// move ([`DynamoDbStore::merge_moves`]). DynamoDB itself would refuse two actions on the one
/// marker item, and a transaction naming it twice was retried until it gave up as contended.
fn claimed_while_held(roles: &[(usize, Role, Option<Item>)]) -> Option<usize> {
    let claims = roles
        .iter()
        .filter_map(|(claimer, role, claimed)| match (role, claimed) {
            (Role::Claim(_), Some(claimed)) => Some((*claimer, claimed)),
            _ => None,
        });
    claims
        .clone()
        .filter(|(claimer, claimed)| {
            let released_later = roles.iter().any(|(releaser, role, released)| {
                matches!(role, Role::Release(_))
                    && released.as_ref() == Some(*claimed)
                    && releaser > claimer
            });
            let claimed_before = claims
                .clone()
                .any(|(other, marker)| other < *claimer && marker == *claimed);
            released_later || claimed_before
        })
        .map(|(claimer, _)| claimer)
        .min()
}

/// A transaction's actions, each with its step's index and its role.
type Planned = (Vec<TransactWriteItem>, Vec<(usize, Role)>);

/// What an action of the transaction is, to read which one a refusal names.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The step's record.
    Record,
    /// Releases the step's record's old marker in this unique index.
    Release(usize),
    /// Claims the step's record's marker in this unique index.
    Claim(usize),
}

/// Whether a step needs its record read before it can be sent.
fn reads_first(step: &Step) -> bool {
    match &step.op {
        Op::Patch(_, patch, _) => step.moves_markers(patch),
        Op::Delete(..) => !step.schema.uniques().is_empty(),
        _ => false,
    }
}

impl DynamoDbStore {
    pub(super) async fn transact_steps(&self, steps: &[Step]) -> Result<()> {
        let mut known = Vec::with_capacity(steps.len());
        for step in steps {
            known.push(if reads_first(step) {
                self.read_known(step).await?
            } else {
                Known::Guess
            });
        }
        // Per step, the unique indexes whose old marker another record holds: left alone.
        let mut foreign: Vec<Vec<bool>> = steps
            .iter()
            .map(|s| vec![false; s.schema.uniques().len()])
            .collect();
        let mut backoff = Backoff::contention();
        for _ in 0..MAX_ROUNDS {
            let mut actions = Vec::new();
            let mut roles: Vec<(usize, Role, Option<Item>)> = Vec::new();
            for (index, step) in steps.iter().enumerate() {
                match self.step_actions(step, &known[index], &foreign[index], &mut actions) {
                    Ok(built) => built
                        .into_iter()
                        .for_each(|(role, marker)| roles.push((index, role, marker))),
                    Err(e) => {
                        return Err(self.first_failure(&steps[..index], failed(index, e)).await);
                    }
                }
            }
            if let Some(claimer) = claimed_while_held(&roles) {
                let taken = Error::AlreadyExists {
                    what: "unique value",
                };
                let error = failed(claimer, taken);
                return Err(self.first_failure(&steps[..=claimer], error).await);
            }
            let (actions, roles) = self.merge_moves(steps, actions, roles)?;
            // A new token for each set of actions: DynamoDB refuses a token with other ones.
            let token = uuid::Uuid::now_v7().simple().to_string();
            let (action, stored) =
                match txn::transact_once(&self.client, actions, Some(&token)).await {
                    Ok(Outcome::Done) => return Ok(()),
                    Ok(Outcome::ConditionFailed { index, item }) => (index, item),
                    // DynamoDB refuses a whole transaction with a `ValidationException` when
                    // an update cannot be made on its record (a path whose parent is missing
                    // or of another type), without saying which: the step that cannot be
                    // made is found as the reference finds it.
                    Err(e @ Error::Backend { .. }) => {
                        return Err(self.first_failure(steps, e).await);
                    }
                    Err(e) => return Err(e),
                };
            let Some(&(index, role)) = roles.get(action) else {
                return Err(error::bad_item(
                    "",
                    format!(
                        "a transaction was refused by action {action} of {}",
                        roles.len()
                    ),
                ));
            };
            let step = &steps[index];
            let table = self.table_name(&step.schema);
            match role {
                Role::Record => {
                    // The refused action's item is the step's record, as it was.
                    let record = stored
                        .map(|stored| -> Result<Record> {
                            Ok(Record {
                                key: step.key().clone(),
                                version: item::version_of(&step.schema, &stored, &table)?,
                                document: item::document(&step.schema, &stored, &table)?,
                            })
                        })
                        .transpose()?;
                    let learnt = refused(step, &known[index], record.as_ref())
                        .map_err(|e| failed(index, e))?;
                    known[index] = learnt;
                }
                Role::Release(u) => {
                    foreign[index][u] = true;
                    continue;
                }
                Role::Claim(u) => {
                    let Op::Put(row, _) = &step.op else {
                        return Err(failed(
                            index,
                            Error::AlreadyExists {
                                what: "unique value",
                            },
                        ));
                    };
                    let values = row.uniques()[u].as_deref().unwrap_or_default();
                    // The refused action's item is the marker, as `write_row` reads it.
                    if self
                        .clear_stale_marker(&step.schema, u, values, stored.as_ref())
                        .await?
                    {
                        continue;
                    }
                    return Err(failed(
                        index,
                        Error::AlreadyExists {
                            what: "unique value",
                        },
                    ));
                }
            }
            if !backoff.wait().await {
                break;
            }
        }
        Err(DynamoError::Contention {
            attempts: backoff.failures(),
        }
        .into())
    }

    /// The error of a transaction that failed without the database naming the step: the
    /// first of `steps` that fails on its record as read now, as the database (which reports
    /// every action's reason) and the memory reference answer; `error` if none does. Used
    /// when a step failed before anything was sent (its condition answered on the record read
    /// first: `steps` are the ones before it) and when DynamoDB refused the whole
    /// transaction. Each step's unique values are checked as the reference checks them, in
    /// order, counting the values the steps before it claim and release. Nothing was written
    /// either way.
    async fn first_failure(&self, steps: &[Step], error: Error) -> Error {
        type Value = (String, usize, Vec<KeyValue>);
        let (mut claimed, mut released): (Vec<Value>, Vec<Value>) = (Vec::new(), Vec::new());
        for (index, step) in steps.iter().enumerate() {
            let schema = &step.schema;
            let current = match self.read_known(step).await {
                Ok(current) => current,
                Err(e) => return e,
            };
            let none = vec![None; schema.uniques().len()];
            let new = match step.resolve(current.record()) {
                Err(e) => return failed(index, e),
                Ok(Resolved::Insert(row) | Resolved::Replace(row, _)) => row.uniques().to_vec(),
                Ok(Resolved::Delete(..)) => none.clone(),
                Ok(_) => continue,
            };
            let old = current
                .record()
                .map_or(none, |r| item::unique_values(schema, &r.document));
            for (u, (old, new)) in old.into_iter().zip(new).enumerate() {
                if old == new {
                    continue;
                }
                if let Some(values) = new {
                    let value = (schema.name().to_owned(), u, values);
                    let taken = if claimed.contains(&value) {
                        true
                    } else if released.contains(&value) {
                        false
                    } else {
                        match self.get_by_marker(schema, u, &value.2).await {
                            Ok(holder) => holder.is_some_and(|h| {
                                &h.key != step.key()
                                    && !schema.is_expired(&h.document, now_seconds())
                            }),
                            Err(e) => return e,
                        }
                    };
                    if taken {
                        let taken = Error::AlreadyExists {
                            what: "unique value",
                        };
                        return failed(index, taken);
                    }
                    claimed.push(value);
                }
                if let Some(values) = old {
                    let value = (schema.name().to_owned(), u, values);
                    claimed.retain(|c| c != &value);
                    released.push(value);
                }
            }
        }
        error
    }

    /// A unique value released by one step's record and claimed by another's is one marker,
    /// which a transaction may name only once: the claim alone, conditioned on the marker
    /// being free or held by the record releasing it (whose own action checks it is as read).
    fn merge_moves(
        &self,
        steps: &[Step],
        mut actions: Vec<TransactWriteItem>,
        roles: Vec<(usize, Role, Option<Item>)>,
    ) -> Result<Planned> {
        let mut dropped = vec![false; actions.len()];
        for (i, (releaser, release, released)) in roles.iter().enumerate() {
            let (Role::Release(_), Some(released)) = (release, released) else {
                continue;
            };
            for (j, (claimer, claim, claimed)) in roles.iter().enumerate() {
                let (Role::Claim(u), Some(claimed)) = (claim, claimed) else {
                    continue;
                };
                let Op::Put(row, _) = &steps[*claimer].op else {
                    continue;
                };
                if claimed != released || dropped[i] {
                    continue;
                }
                let Some(values) = &row.uniques()[*u] else {
                    continue;
                };
                dropped[i] = true;
                actions[j] = txn::put(
                    &self.unique_table,
                    marker_item(&steps[*claimer].schema, *u, values, row.key()),
                    &free_or_held_by(steps[*releaser].key()),
                )?;
            }
        }
        let kept = actions
            .into_iter()
            .zip(roles)
            .zip(dropped)
            .filter(|(_, dropped)| !dropped)
            .map(|(pair, _)| pair)
            .map(|(action, (step, role, _))| (action, (step, role)))
            .unzip();
        Ok(kept)
    }

    /// The record of a step that must be read before it is sent.
    async fn read_known(&self, step: &Step) -> Result<Known> {
        let table = self.table_name(&step.schema);
        Ok(match self.get_item(&step.schema, step.key()).await? {
            None => Known::Absent,
            Some(stored) => Known::Stored(Record {
                key: step.key().clone(),
                version: item::version_of(&step.schema, &stored, &table)?,
                document: item::document(&step.schema, &stored, &table)?,
            }),
        })
    }

    /// The actions of one step, given what is known of its record; returns their roles.
    fn step_actions(
        &self,
        step: &Step,
        known: &Known,
        foreign: &[bool],
        actions: &mut Vec<TransactWriteItem>,
    ) -> Result<Vec<(Role, Option<Item>)>> {
        let schema = &step.schema;
        let table = self.table_name(schema);
        let key = step.key();
        match &step.op {
            Op::Put(row, condition) => {
                let version = match known.version() {
                    Some(version) => next_version(version)?,
                    None => 1,
                };
                let condition = record_condition(schema, known.version(), condition.as_ref())?;
                self.put_actions(step, row, known, version, &condition, foreign, actions)
            }
            Op::Patch(_, patch, condition) if step.moves_markers(patch) => {
                // Read before: resolved here, sent as a put at the version read.
                let current = known.record().ok_or(Error::NotFound { what: "record" })?;
                let row = patch_row(schema, current, patch, condition.as_ref())?;
                let version = next_version(current.version)?;
                let condition =
                    record_condition(schema, Some(current.version), condition.as_ref())?;
                self.put_actions(step, &row, known, version, &condition, foreign, actions)
            }
            Op::Patch(_, patch, condition) => {
                let (p, expression, guard) =
                    patch::update_parts(schema, patch, condition.as_ref())?;
                let condition = p.condition(guard);
                let update = Update::builder()
                    .table_name(&table)
                    .set_key(Some(item::key_item(schema, key)))
                    .update_expression(expression)
                    .condition_expression(condition.expression())
                    .set_expression_attribute_names(condition.names())
                    .set_expression_attribute_values(condition.values())
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(error::build)?;
                actions.push(TransactWriteItem::builder().update(update).build());
                Ok(vec![(Role::Record, None)])
            }
            Op::Delete(_, condition) if schema.uniques().is_empty() => {
                let key = item::key_item(schema, key);
                actions.push(match condition {
                    Some(condition) => {
                        let mut p = Placeholders::default();
                        let expression = filter::render(condition, &mut p)?;
                        txn::delete(&table, key, &p.condition(expression))?
                    }
                    None => txn::delete_any(&table, key)?,
                });
                Ok(vec![(Role::Record, None)])
            }
            Op::Delete(_, condition) => {
                let Some(current) = known.record() else {
                    // No record, as read: the condition on an empty item, and, so that a
                    // record written meanwhile fails the attempt, a check that none is.
                    if let Some(condition) = condition {
                        condition_holds(schema, None, condition)?;
                    }
                    actions.push(txn::check(
                        &table,
                        item::key_item(schema, key),
                        &absent(schema),
                    )?);
                    return Ok(vec![(Role::Record, None)]);
                };
                let condition =
                    record_condition(schema, Some(current.version), condition.as_ref())?;
                actions.push(txn::delete(
                    &table,
                    item::key_item(schema, key),
                    &condition,
                )?);
                let mut roles = vec![(Role::Record, None)];
                let uniques = item::unique_values(schema, &current.document);
                for (index, values) in uniques.iter().enumerate() {
                    if let Some(values) = values
                        && !foreign[index]
                    {
                        let marker = marker_key(schema, index, values);
                        actions.push(txn::delete(
                            &self.unique_table,
                            marker.clone(),
                            &free_or_held_by(key),
                        )?);
                        roles.push((Role::Release(index), Some(marker)));
                    }
                }
                Ok(roles)
            }
            Op::Check(_, condition) => {
                let mut p = Placeholders::default();
                let expression = filter::render(condition, &mut p)?;
                actions.push(txn::check(
                    &table,
                    item::key_item(schema, key),
                    &p.condition(expression),
                )?);
                Ok(vec![(Role::Record, None)])
            }
            other => Err(Error::invalid(
                "transaction",
                format!("not supported on DynamoDB: {other:?}"),
            )),
        }
    }

    /// The record's put under `condition`, and the markers whose values change.
    #[allow(clippy::too_many_arguments)]
    fn put_actions(
        &self,
        step: &Step,
        row: &Row,
        known: &Known,
        version: u64,
        condition: &Condition,
        foreign: &[bool],
        actions: &mut Vec<TransactWriteItem>,
    ) -> Result<Vec<(Role, Option<Item>)>> {
        let schema = &step.schema;
        let table = self.table_name(schema);
        let old: Vec<Option<Vec<KeyValue>>> = match known.record() {
            Some(record) => item::unique_values(schema, &record.document),
            None => vec![None; schema.uniques().len()],
        };
        actions.push(txn::put(
            &table,
            item::record_item(schema, row, version)?,
            condition,
        )?);
        let mut roles = vec![(Role::Record, None)];
        for (index, (old, new)) in old.iter().zip(row.uniques()).enumerate() {
            if old == new {
                continue;
            }
            if let Some(values) = old
                && !foreign[index]
            {
                let marker = marker_key(schema, index, values);
                roles.push((Role::Release(index), Some(marker.clone())));
                actions.push(txn::delete(
                    &self.unique_table,
                    marker,
                    &free_or_held_by(row.key()),
                )?);
            }
            if let Some(values) = new {
                roles.push((Role::Claim(index), Some(marker_key(schema, index, values))));
                actions.push(txn::put(
                    &self.unique_table,
                    marker_item(schema, index, values, row.key()),
                    &free_or_held_by(row.key()),
                )?);
            }
        }
        Ok(roles)
    }
}

/// What a refusal of a step's own action says: the step's error when the caller's condition
/// (or the record's existence) is why, otherwise what the next attempt should know.
fn refused(step: &Step, known: &Known, stored: Option<&Record>) -> Result<Known> {
    let schema = &step.schema;
    let conflict = |record: Option<&Record>| {
        let version = record.map_or(0, |r| r.version);
        Error::Conflict {
            what: "condition",
            expected: version,
            actual: version,
        }
    };
    let now = stored.map(|r| r.version);
    let learnt = stored.map_or(Known::Absent, |r| Known::Stored(r.clone()));
    match &step.op {
        Op::Put(_, condition) => {
            if now == known.version() {
                return Err(conflict(stored));
            }
            // The record was not as assumed: the refusal holds it as it was, and a condition
            // failing on that is the answer.
            if let Some(condition) = condition {
                condition_holds(schema, stored, condition)?;
            }
            Ok(learnt)
        }
        Op::Patch(_, patch, condition) if step.moves_markers(patch) => {
            let Some(stored) = stored else {
                return Err(Error::NotFound { what: "record" });
            };
            if now == known.version() {
                return Err(conflict(Some(stored)));
            }
            // Changed since read: resolved again on the record as the refusal returned it.
            patch_row(schema, stored, patch, condition.as_ref())?;
            Ok(learnt)
        }
        Op::Patch(_, patch, condition) => {
            let stored = stored.ok_or(Error::NotFound { what: "record" })?;
            next_version(stored.version)?;
            // An `add` past the 64-bit range, refused by its guard, is the reference's
            // refusal of the patch.
            if let Err(refused @ Error::InvalidInput { .. }) =
                patch_row(schema, stored, patch, condition.as_ref())
            {
                return Err(refused);
            }
            Err(conflict(Some(stored)))
        }
        Op::Delete(_, condition) if !schema.uniques().is_empty() => {
            if stored.is_some() && now == known.version() {
                return Err(conflict(stored));
            }
            if let Some(condition) = condition {
                condition_holds(schema, stored, condition)?;
            }
            Ok(learnt)
        }
        Op::Delete(..) | Op::Check(..) => Err(conflict(stored)),
        _ => Err(conflict(stored)),
    }
}

/// The record is as known (absent, or at `version`) and `condition`, if any, holds on it.
fn record_condition(
    schema: &TableSchema,
    version: Option<u64>,
    condition: Option<&DocCondition>,
) -> Result<Condition> {
    Ok(match (condition, version) {
        (Some(condition), _) => guarded(schema, version, condition)?,
        (None, Some(version)) => at_version(schema, version),
        (None, None) => absent(schema),
    })
}
