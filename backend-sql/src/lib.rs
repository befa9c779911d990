//! storekit backends for SQLite and PostgreSQL.
