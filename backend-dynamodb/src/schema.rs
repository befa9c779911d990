//! Creating and dropping the store's own tables (users, key-value, and the tables store's
//! markers), all keyed by string `pk` and `sk`.
//!
//! [`ensure`] is idempotent and safe to run concurrently: a table that exists is kept (after
//! checking its key schema), creation waits until the table is `ACTIVE`, and native TTL is
//! enabled on the key-value table's `ttl` attribute only if it is not already.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::delete_table::DeleteTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use storekit_core::Result;

use crate::error::{self, DynamoError};
use crate::item::{PK, SK};
use crate::kv::TTL;

/// How long to wait for a table to become active or to disappear.
pub(crate) const TABLE_WAIT: Duration = Duration::from_secs(300);
/// How often to look while waiting.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// Creates the tables that are missing (all keyed by `pk` and `sk`), waits until they are
/// active, and enables TTL on the key-value table.
pub(crate) async fn ensure(client: &Client, tables: &[&str], kv: &str) -> Result<()> {
    for &table in tables {
        create_table(client, table).await?;
    }
    for &table in tables {
        let description = wait_active(client, table).await?;
        check_keys(table, &description)?;
    }
    enable_ttl(client, kv).await
}

/// Deletes the tables and waits until they are gone; missing tables are fine.
pub(crate) async fn drop(client: &Client, tables: &[String]) -> Result<()> {
    for table in tables {
        match client.delete_table().table_name(table).send().await {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DeleteTableError::ResourceNotFoundException(_))
                ) => {}
            Err(err) => return Err(error::sdk(err)),
        }
    }
    for table in tables {
        wait_gone(client, table).await?;
    }
    Ok(())
}

/// Creates a table keyed by `pk` and `sk` unless it exists; does not wait.
pub(crate) async fn create_table(client: &Client, table: &str) -> Result<()> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(error::build)
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(error::build)
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK)?)
        .attribute_definitions(attribute(SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .send()
        .await;
    match created {
        Ok(_) => {
            tracing::info!(table, "created dynamodb table");
            Ok(())
        }
        // Already there (or being created by a concurrent migrate): wait for it below.
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(error::sdk(err)),
    }
}

pub(crate) async fn wait_active(client: &Client, table: &str) -> Result<TableDescription> {
    let deadline = tokio::time::Instant::now() + TABLE_WAIT;
    loop {
        let description = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(error::sdk)?
            .table;
        if let Some(description) = description
            && description.table_status == Some(TableStatus::Active)
        {
            return Ok(description);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DynamoError::TableWait {
                table: table.to_owned(),
                state: "active",
            }
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(crate) async fn wait_gone(client: &Client, table: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + TABLE_WAIT;
    loop {
        match client.describe_table().table_name(table).send().await {
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DescribeTableError::ResourceNotFoundException(_))
                ) =>
            {
                return Ok(());
            }
            Err(err) => return Err(error::sdk(err)),
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                return Err(DynamoError::TableWait {
                    table: table.to_owned(),
                    state: "deleted",
                }
                .into());
            }
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A table of the same name made by something else would fail every request in confusing
/// ways; say so once, here.
pub(crate) fn check_keys(table: &str, description: &TableDescription) -> Result<()> {
    let keys: Vec<(&str, &KeyType)> = description
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    if keys == [(PK, &KeyType::Hash), (SK, &KeyType::Range)] {
        Ok(())
    } else {
        Err(DynamoError::Schema {
            table: table.to_owned(),
            why: format!("its key schema is {keys:?}, not (pk HASH, sk RANGE)"),
        }
        .into())
    }
}

async fn enable_ttl(client: &Client, table: &str) -> Result<()> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(error::sdk)?
        .time_to_live_description;
    let status = described
        .as_ref()
        .and_then(|d| d.time_to_live_status.clone());
    let attribute = described.as_ref().and_then(|d| d.attribute_name.as_deref());
    if matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        if attribute == Some(TTL) {
            return Ok(());
        }
        return Err(DynamoError::Schema {
            table: table.to_owned(),
            why: format!("its TTL is on attribute {attribute:?}, not {TTL:?}"),
        }
        .into());
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL)
        .build()
        .map_err(error::build)?;
    match client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => {
            tracing::info!(table, attribute = TTL, "enabled dynamodb native TTL");
            Ok(())
        }
        // A concurrent migrate enabled it between our look and our update.
        Err(err) if err.code() == Some("ValidationException") => {
            let again = client
                .describe_time_to_live()
                .table_name(table)
                .send()
                .await
                .map_err(error::sdk)?;
            let enabled = again.time_to_live_description.is_some_and(|d| {
                d.attribute_name.as_deref() == Some(TTL)
                    && matches!(
                        d.time_to_live_status,
                        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                    )
            });
            if enabled {
                Ok(())
            } else {
                Err(error::sdk(err))
            }
        }
        Err(err) => Err(error::sdk(err)),
    }
}
