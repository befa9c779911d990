//! Transactions: several writes and checks, on records of any tables of one store, applied all
//! together or not at all.
//!
//! A [`Transaction`] is a list of actions, each on one record of a table given by its schema:
//! a put, a patch or a delete, each optionally conditional, and a condition check that writes
//! nothing. [`TableStore::transact`](super::TableStore::transact) runs it as DynamoDB's
//! `TransactWriteItems` (one request, with an idempotency token so that a resend by the SDK
//! cannot apply it twice), as one database transaction on SQL, and under the one lock of the
//! memory store. When an action fails, nothing is written and the error is
//! [`Error::TransactionFailed`] with the action's index and its own error.
//!
//! The rules, the same on every backend and checked before anything is sent:
//!
//! - At most [`MAX_TRANSACTION_ACTIONS`] (100) actions, DynamoDB's limit, **counting the unique
//!   markers** each action may move on DynamoDB: a put (or a patch of a unique-indexed field,
//!   or on a table with computed keys) counts 1 plus 2 per unique index of its table (the old
//!   value's marker released, the new one's claimed), a delete 1 plus 1 per unique index, a
//!   plain patch or a check 1. Over it: [`Error::InvalidInput`] (`"transaction"`).
//! - No two actions on one record (DynamoDB refuses it): [`Error::InvalidInput`].
//! - An empty transaction does nothing.
//!
//! ```
//! # async fn run() -> storekit_core::Result<()> {
//! use serde_json::json;
//! use storekit_core::{Error, MemoryStore};
//! use storekit_core::table::{
//!     Condition, KeyDef, Patch, RecordKey, TableSchema, TableStore, Transaction,
//! };
//!
//! let store = MemoryStore::new();
//! let orders = TableSchema::builder("orders", KeyDef::text("id")).build()?;
//! let stock = TableSchema::builder("stock", KeyDef::text("sku")).build()?;
//! store.ensure_table(&orders).await?;
//! store.ensure_table(&stock).await?;
//! store.put(&stock, json!({"sku": "lamp", "stock": 1}).as_object().cloned().unwrap_or_default()).await?;
//!
//! // An order and its stock decrement, together or not at all.
//! let order = |id: &str| json!({"id": id, "sku": "lamp"}).as_object().cloned().unwrap_or_default();
//! let buy = |id: &str| {
//!     Transaction::new()
//!         .put_if(&orders, order(id), Condition::not_exists("id"))
//!         .patch_if(&stock, "lamp", Patch::new().add("stock", -1), Condition::ge("stock", 1))
//! };
//! store.transact(&buy("o-1")).await?;
//! // Sold out: the second action fails, and order o-2 is not written either.
//! let refused = store.transact(&buy("o-2")).await;
//! assert!(matches!(refused, Err(Error::TransactionFailed { index: 1, .. })));
//! assert!(store.get(&orders, &RecordKey::from("o-2")).await?.is_none());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```

use super::{Condition, Document, Patch, Record, RecordKey, Row, TableSchema};
use crate::{Error, Result};

/// The most actions in one transaction, unique markers counted (see the module docs).
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// What one action of a [`Transaction`] does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Writes the record whether or not it exists (version 1, or one more), if the condition
    /// holds on it (on an empty document when there is none).
    Put {
        /// The document to write.
        document: Document,
        /// The condition, if any.
        condition: Option<Condition>,
    },
    /// Patches the record, which must exist ([`Error::NotFound`] otherwise).
    Patch {
        /// The record.
        key: RecordKey,
        /// The change.
        patch: Patch,
        /// The condition, if any.
        condition: Option<Condition>,
    },
    /// Deletes the record if there is one.
    Delete {
        /// The record.
        key: RecordKey,
        /// The condition, if any.
        condition: Option<Condition>,
    },
    /// Writes nothing, and fails the transaction unless the condition holds on the record.
    Check {
        /// The record.
        key: RecordKey,
        /// The condition.
        condition: Condition,
    },
}

/// A list of actions on records of any tables, applied all together or not at all; see the
/// module docs.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    actions: Vec<(TableSchema, Action)>,
}

impl Transaction {
    /// An empty transaction.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an action on a record of the table `schema`.
    #[must_use]
    pub fn action(mut self, schema: &TableSchema, action: Action) -> Self {
        self.actions.push((schema.clone(), action));
        self
    }

    /// Puts a record.
    #[must_use]
    pub fn put(self, schema: &TableSchema, document: Document) -> Self {
        let condition = None;
        self.action(
            schema,
            Action::Put {
                document,
                condition,
            },
        )
    }

    /// Puts a record if `condition` holds on the stored one (or on an empty document).
    #[must_use]
    pub fn put_if(self, schema: &TableSchema, document: Document, condition: Condition) -> Self {
        let condition = Some(condition);
        self.action(
            schema,
            Action::Put {
                document,
                condition,
            },
        )
    }

    /// Patches a record.
    #[must_use]
    pub fn patch(self, schema: &TableSchema, key: impl Into<RecordKey>, patch: Patch) -> Self {
        let (key, condition) = (key.into(), None);
        self.action(
            schema,
            Action::Patch {
                key,
                patch,
                condition,
            },
        )
    }

    /// Patches a record if `condition` holds on it.
    #[must_use]
    pub fn patch_if(
        self,
        schema: &TableSchema,
        key: impl Into<RecordKey>,
        patch: Patch,
        condition: Condition,
    ) -> Self {
        let (key, condition) = (key.into(), Some(condition));
        self.action(
            schema,
            Action::Patch {
                key,
                patch,
                condition,
            },
        )
    }

    /// Deletes a record.
    #[must_use]
    pub fn delete(self, schema: &TableSchema, key: impl Into<RecordKey>) -> Self {
        let (key, condition) = (key.into(), None);
        self.action(schema, Action::Delete { key, condition })
    }

    /// Deletes a record if `condition` holds on it (or on an empty document).
    #[must_use]
    pub fn delete_if(
        self,
        schema: &TableSchema,
        key: impl Into<RecordKey>,
        condition: Condition,
    ) -> Self {
        let (key, condition) = (key.into(), Some(condition));
        self.action(schema, Action::Delete { key, condition })
    }

    /// Fails the transaction unless `condition` holds on the record (or on an empty document).
    #[must_use]
    pub fn check(
        self,
        schema: &TableSchema,
        key: impl Into<RecordKey>,
        condition: Condition,
    ) -> Self {
        let key = key.into();
        self.action(schema, Action::Check { key, condition })
    }

    /// The actions, in order.
    #[must_use]
    pub fn actions(&self) -> &[(TableSchema, Action)] {
        &self.actions
    }

    /// The actions checked, as a backend receives them: documents made rows, keys, patches and
    /// conditions checked against their schemas, the limit and the one-action-per-record rule
    /// kept. A failed action is [`Error::TransactionFailed`] with its index.
    pub fn checked(&self) -> Result<Vec<Step>> {
        let mut steps = Vec::with_capacity(self.actions.len());
        let mut units = 0;
        for (index, (schema, action)) in self.actions.iter().enumerate() {
            let step = Step::checked(schema, action).map_err(|e| failed(index, e))?;
            units += step.units();
            if steps
                .iter()
                .any(|s: &Step| s.schema.name() == schema.name() && s.key() == step.key())
            {
                return Err(failed(
                    index,
                    Error::invalid(
                        "transaction",
                        "a transaction may hold one action per record",
                    ),
                ));
            }
            steps.push(step);
        }
        if units > MAX_TRANSACTION_ACTIONS {
            return Err(Error::invalid(
                "transaction",
                format!(
                    "{} actions count as {units} with the unique markers they may move, over \
                     the limit of {MAX_TRANSACTION_ACTIONS}",
                    self.actions.len()
                ),
            ));
        }
        Ok(steps)
    }
}

/// [`Error::TransactionFailed`] for action `index`.
#[must_use]
pub fn failed(index: usize, source: Error) -> Error {
    Error::TransactionFailed {
        index,
        source: Box::new(source),
    }
}

/// One checked action of a transaction, as backends receive it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The table.
    pub schema: TableSchema,
    /// What to do.
    pub op: Op,
}

/// What a [`Step`] does, its arguments checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Op {
    /// Puts the row, if the condition holds.
    Put(Row, Option<Condition>),
    /// Patches the record, which must exist, if the condition holds.
    Patch(RecordKey, Patch, Option<Condition>),
    /// Deletes the record, if the condition holds.
    Delete(RecordKey, Option<Condition>),
    /// Checks the condition.
    Check(RecordKey, Condition),
}

/// What a step writes, given the record as stored: see [`Step::resolve`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Resolved {
    /// Insert the row at version 1 (there is no record).
    Insert(Row),
    /// Replace the record at `expected` by the row, at version `expected + 1`.
    Replace(Row, u64),
    /// Delete the record at this version.
    Delete(RecordKey, u64),
    /// Write nothing.
    Nothing,
}

impl Step {
    fn checked(schema: &TableSchema, action: &Action) -> Result<Self> {
        let check = |condition: &Option<Condition>| -> Result<Option<Condition>> {
            if let Some(condition) = condition {
                condition.check(schema)?;
            }
            Ok(condition.clone())
        };
        let op = match action {
            Action::Put {
                document,
                condition,
            } => Op::Put(schema.row(document.clone())?, check(condition)?),
            Action::Patch {
                key,
                patch,
                condition,
            } => {
                schema.check_key(key)?;
                patch.check(schema)?;
                Op::Patch(key.clone(), patch.clone(), check(condition)?)
            }
            Action::Delete { key, condition } => {
                schema.check_key(key)?;
                Op::Delete(key.clone(), check(condition)?)
            }
            Action::Check { key, condition } => {
                schema.check_key(key)?;
                condition.check(schema)?;
                Op::Check(key.clone(), condition.clone())
            }
        };
        Ok(Self {
            schema: schema.clone(),
            op,
        })
    }

    /// The record the step is on.
    #[must_use]
    pub fn key(&self) -> &RecordKey {
        match &self.op {
            Op::Put(row, _) => row.key(),
            Op::Patch(key, ..) | Op::Delete(key, _) | Op::Check(key, _) => key,
        }
    }

    /// How many of DynamoDB's actions the step may take, markers counted.
    fn units(&self) -> usize {
        let uniques = self.schema.uniques().len();
        match &self.op {
            Op::Put(..) => 1 + 2 * uniques,
            Op::Patch(_, patch, _) if self.moves_markers(patch) => 1 + 2 * uniques,
            Op::Delete(..) => 1 + uniques,
            Op::Patch(..) | Op::Check(..) => 1,
        }
    }

    /// Whether a patch may move unique markers or computed keys, so that it is made as a read
    /// and a replace of the whole record on DynamoDB.
    #[must_use]
    pub fn moves_markers(&self, patch: &Patch) -> bool {
        let fields = patch.fields();
        self.schema.has_computed_keys()
            || self
                .schema
                .uniques()
                .iter()
                .flat_map(|u| u.components().iter().map(|c| c.field()))
                .any(|f| fields.contains(&f))
    }

    /// What the step writes over `current`, the record as stored (read under the backend's
    /// lock, in its transaction): its condition checked on it, or on an empty document when
    /// there is none. The error is the step's own (the caller adds its index).
    pub fn resolve(&self, current: Option<&Record>) -> Result<Resolved> {
        let schema = &self.schema;
        let holds = |condition: &Option<Condition>| match condition {
            Some(condition) => super::patch::condition_holds(schema, current, condition),
            None => Ok(()),
        };
        Ok(match &self.op {
            Op::Put(row, condition) => {
                holds(condition)?;
                match current {
                    None => Resolved::Insert(row.clone()),
                    Some(current) => {
                        super::next_version(current.version)?;
                        Resolved::Replace(row.clone(), current.version)
                    }
                }
            }
            Op::Patch(_, patch, condition) => {
                let current = current.ok_or(Error::NotFound { what: "record" })?;
                let row = super::patch::patch_row(schema, current, patch, condition.as_ref())?;
                super::next_version(current.version)?;
                Resolved::Replace(row, current.version)
            }
            Op::Delete(key, condition) => {
                holds(condition)?;
                match current {
                    None => Resolved::Nothing,
                    Some(current) => Resolved::Delete(key.clone(), current.version),
                }
            }
            Op::Check(_, condition) => {
                super::patch::condition_holds(schema, current, condition)?;
                Resolved::Nothing
            }
        })
    }
}
