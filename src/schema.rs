//! The definitions storekit's stores and your tables need, rendered for the tools that
//! provision databases: Terraform and CloudFormation for DynamoDB, SQL for SQLite and
//! PostgreSQL. Each backend renders from the same definitions it executes (the DynamoDB
//! `CreateTable` inputs, the SQL migrations and table statements), so an export cannot drift
//! from what the store creates or expects.
//!
//! Tables are declared in your own crate, so the rendering is a library call that a build
//! script or a few-line binary makes:
//!
//! ```
//! # #[cfg(feature = "dynamodb")] {
//! use storekit::table::{KeyDef, TableSchema};
//!
//! let products = TableSchema::builder("products", KeyDef::text("id"))
//!     .index("product-name-index", KeyDef::text("name"), Some(KeyDef::float("updated_at")))
//!     .build()
//!     .unwrap();
//! let terraform = storekit::schema::terraform(&[&products]).unwrap();
//! assert!(terraform.contains("product-name-index"));
//! # }
//! ```
//!
//! The `storekit schema` command prints the same for storekit's own stores, and `storekit
//! schema check URL` compares a live database with them ([`crate::Stores::schema_differences`]).

use std::fmt;
use std::str::FromStr;

pub use storekit_core::admin::ExportOptions;
use storekit_core::{Error, Result, TableSchema};

/// The backend an export is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// Amazon DynamoDB.
    DynamoDb,
}

/// The language of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Terraform's `aws_dynamodb_table` resources (DynamoDB).
    Terraform,
    /// A CloudFormation template of `AWS::DynamoDB::Table` resources, as JSON (DynamoDB).
    CloudFormation,
    /// The SQL the migrations and `ensure_table` run (SQLite, PostgreSQL).
    Sql,
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "dynamodb" => Ok(Self::DynamoDb),
            other => Err(Error::invalid(
                "backend",
                format!("{other:?}: expected sqlite, postgres or dynamodb"),
            )),
        }
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "terraform" => Ok(Self::Terraform),
            "cloudformation" => Ok(Self::CloudFormation),
            "sql" => Ok(Self::Sql),
            other => Err(Error::invalid(
                "format",
                format!("{other:?}: expected terraform, cloudformation or sql"),
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::DynamoDb => "dynamodb",
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Terraform => "terraform",
            Self::CloudFormation => "cloudformation",
            Self::Sql => "sql",
        })
    }
}

/// Renders what `options` and `tables` need for `target` in `format`. Terraform and
/// CloudFormation are for DynamoDB, SQL for SQLite and PostgreSQL; another pairing, or a
/// backend whose Cargo feature is off, is [`Error::InvalidInput`].
pub fn render(
    target: Target,
    format: Format,
    options: &ExportOptions,
    tables: &[&TableSchema],
) -> Result<String> {
    storekit_core::validate::check_prefix(&options.prefix)?;
    match (target, format) {
        (Target::DynamoDb, Format::Terraform) => dynamodb::terraform(options, tables),
        (Target::DynamoDb, Format::CloudFormation) => dynamodb::cloudformation(options, tables),
        (Target::Sqlite, Format::Sql) => sql::sqlite(options, tables),
        (Target::Postgres, Format::Sql) => sql::postgres(options, tables),
        (target, format) => Err(Error::invalid(
            "format",
            format!(
                "{format} is not a format for {target}: use terraform or cloudformation for \
                 dynamodb, sql for sqlite and postgres"
            ),
        )),
    }
}

/// Renders the definitions of the live store at `url` in `format` (Terraform for DynamoDB
/// and SQL for SQLite and PostgreSQL when `None`): storekit's own stores with the URL's
/// `prefix=` and the store's id kind, and every table its catalog records, declared in code
/// or adopted by `ensure_table`, as the catalog recorded them. What `storekit schema --from
/// URL` prints: a store's tables exported without writing a binary that declares them.
///
/// A `memory://` URL holds nothing to export: [`Error::InvalidInput`].
pub async fn render_from(url: &str, format: Option<Format>) -> Result<String> {
    let stores = crate::connect(url).await?;
    let target: Target = match stores.backend() {
        "memory" => {
            return Err(Error::invalid(
                "url",
                "a memory store lives in its process: there is no live schema to export",
            ));
        }
        backend => backend.parse()?,
    };
    let format = format.unwrap_or(match target {
        Target::DynamoDb => Format::Terraform,
        Target::Sqlite | Target::Postgres => Format::Sql,
    });
    let transfer = stores.transfer();
    let options = ExportOptions::default()
        .prefix(url_prefix(url))
        .id_kind(transfer.id_kind());
    let tables = transfer.tables().await?;
    let tables: Vec<&TableSchema> = tables.iter().collect();
    render(target, format, &options, &tables)
}

/// The `prefix=` of a store URL (empty when it has none): prefixes are identifiers, so they
/// are never percent-encoded.
fn url_prefix(url: &str) -> String {
    url.split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("prefix="))
        .unwrap_or_default()
        .to_owned()
}

/// Terraform for `tables` on DynamoDB, with the marker table their unique indexes and
/// catalog items live in; no prefix.
#[cfg(feature = "dynamodb")]
pub fn terraform(tables: &[&TableSchema]) -> Result<String> {
    storekit_dynamodb::export::terraform(&ExportOptions::default().tables_only(), tables)
}

/// A CloudFormation template (JSON) for `tables` on DynamoDB, with the marker table; no
/// prefix.
#[cfg(feature = "dynamodb")]
pub fn cloudformation(tables: &[&TableSchema]) -> Result<String> {
    storekit_dynamodb::export::cloudformation(&ExportOptions::default().tables_only(), tables)
}

/// The SQLite statements that create `tables` and the tables store's catalog; no prefix.
#[cfg(feature = "sqlite")]
pub fn sqlite(tables: &[&TableSchema]) -> Result<String> {
    storekit_sql::export::sqlite(&ExportOptions::default().tables_only(), tables)
}

/// The PostgreSQL statements that create `tables` and the tables store's catalog; no
/// prefix.
#[cfg(feature = "postgres")]
pub fn postgres(tables: &[&TableSchema]) -> Result<String> {
    storekit_sql::export::postgres(&ExportOptions::default().tables_only(), tables)
}

mod dynamodb {
    use super::*;

    #[cfg(feature = "dynamodb")]
    pub(super) fn terraform(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
        storekit_dynamodb::export::terraform(options, tables)
    }

    #[cfg(feature = "dynamodb")]
    pub(super) fn cloudformation(
        options: &ExportOptions,
        tables: &[&TableSchema],
    ) -> Result<String> {
        storekit_dynamodb::export::cloudformation(options, tables)
    }

    #[cfg(not(feature = "dynamodb"))]
    pub(super) fn terraform(_: &ExportOptions, _: &[&TableSchema]) -> Result<String> {
        Err(crate::feature_off("backend", "dynamodb"))
    }

    #[cfg(not(feature = "dynamodb"))]
    pub(super) fn cloudformation(_: &ExportOptions, _: &[&TableSchema]) -> Result<String> {
        Err(crate::feature_off("backend", "dynamodb"))
    }
}

mod sql {
    use super::*;

    #[cfg(feature = "sqlite")]
    pub(super) fn sqlite(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
        storekit_sql::export::sqlite(options, tables)
    }

    #[cfg(not(feature = "sqlite"))]
    pub(super) fn sqlite(_: &ExportOptions, _: &[&TableSchema]) -> Result<String> {
        Err(crate::feature_off("backend", "sqlite"))
    }

    #[cfg(feature = "postgres")]
    pub(super) fn postgres(options: &ExportOptions, tables: &[&TableSchema]) -> Result<String> {
        storekit_sql::export::postgres(options, tables)
    }

    #[cfg(not(feature = "postgres"))]
    pub(super) fn postgres(_: &ExportOptions, _: &[&TableSchema]) -> Result<String> {
        Err(crate::feature_off("backend", "postgres"))
    }
}
