//! PostgreSQL writes that claim unique values in one order, so that two of them never wait
//! on each other.
//!
//! A write that moves a unique value waits, inside the unique index, for any transaction
//! still writing a row that holds or takes that value, while holding its own row. Two
//! single-row writes that swap values between two records (`k0`: S0 → S1 while `k1`: S1 → S0)
//! then wait on each other; PostgreSQL breaks the circle only after `deadlock_timeout` (1 s by
//! default, settable by superusers alone), and with 32 writers on three records the queues
//! behind those seconds ran past the operation timeout.
//!
//! So, on a table with unique indexes, the write first locks its own row and takes one
//! transaction-scoped advisory lock per unique value it holds or will hold, in one global
//! order (by the lock's number), all in the same statement as the write. A writer that would
//! wait on another's index entry for value V must hold V's lock, which that other one holds
//! too: it waits at the lock instead, before it touches an index, and locks taken in one
//! order cannot form a circle. A value's lock is a hash of the table, the index and the
//! value's text: two values sharing a number only queue behind each other.
//!
//! Writes of several statements in one transaction (batches, transactions) take each
//! statement's locks as they go, so two of them may still wait on each other; the server
//! breaks such a circle as before, and the batch is reported as rolled back. SQLite runs
//! one writer at a time and needs none of this.

use super::{Builder, Dialect, Layout};

/// The name of the common table expression holding the written row's new values.
pub(super) const NEW_ROW: &str = "new_row";

impl Layout {
    /// Whether writes to this table claim their unique values first.
    pub(super) fn claims_unique_values(&self) -> bool {
        self.dialect == Dialect::Postgres && !self.uniques.is_empty()
    }

    /// The `prior` and `claims` common table expressions (after a `WITH new_row (…) AS (…)`
    /// holding the row's new unique columns): the record's row locked with its current unique
    /// values, then one advisory lock per value, old and new, in the order of their numbers.
    /// `prior_where` renders the `WHERE` that finds the record's row.
    pub(super) fn claims(&self, b: &mut Builder, prior_where: impl FnOnce(&mut Builder)) {
        b.sql(", prior AS (SELECT ");
        let columns: Vec<&str> = self
            .uniques
            .iter()
            .flat_map(|u| u.components.iter().map(|(column, _)| column.as_str()))
            .collect();
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                b.sql(", ");
            }
            b.quoted(column);
        }
        b.sql(" FROM ").sql(&self.table);
        prior_where(b);
        b.sql(" FOR UPDATE)");
        // MATERIALIZED: the locks are taken once, whatever the plan does with the result.
        b.sql(", claims AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(h)) AS n FROM ");
        b.sql("(SELECT DISTINCT h FROM (");
        let table = crate::migrations::literal(&self.bare);
        let mut first = true;
        for (u, unique) in self.uniques.iter().enumerate() {
            for source in [NEW_ROW, "prior"] {
                if !first {
                    b.sql(" UNION ALL ");
                }
                first = false;
                b.sql("SELECT hashtextextended(concat_ws('/', ")
                    .sql(&table)
                    .sql(", '")
                    .sql(&u.to_string())
                    .sql("'");
                for (column, _) in &unique.components {
                    b.sql(", ").quoted(column).sql("::text");
                }
                b.sql("), 0) AS h FROM ").sql(source).sql(" WHERE ");
                // A record is in a unique index only with every component set.
                for (i, (column, _)) in unique.components.iter().enumerate() {
                    if i > 0 {
                        b.sql(" AND ");
                    }
                    b.quoted(column).sql(" IS NOT NULL");
                }
            }
        }
        // OFFSET 0 keeps the ordered subquery as it is, so the locks are taken in its order.
        b.sql(") AS wanted ORDER BY h OFFSET 0) AS ordered)");
    }
}
