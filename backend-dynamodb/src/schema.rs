//! Creating, checking and dropping the store's own tables (users, key-value, and the tables
//! store's markers), as [`crate::definition`] defines them.
//!
//! [`ensure`] is idempotent and safe to run concurrently: a table that exists is kept (after
//! checking it against its definition), creation waits until the table is `ACTIVE`, and native
//! TTL is enabled on the key-value table's `ttl` attribute only if it is not already. It
//! reports each table and TTL setting as created or present; [`differences`] compares without
//! changing anything.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::delete_table::DeleteTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use storekit_core::Result;
use storekit_core::admin::{MigrationReport, SchemaDifference};

use crate::definition::TableDefinition;
use crate::error::{self, DynamoError};

/// How long to wait for a table to become active or to disappear.
pub(crate) const TABLE_WAIT: Duration = Duration::from_secs(300);
/// How often to look while waiting.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// Creates the tables that are missing, waits until they are active, checks that each is
/// laid out as defined, and enables TTL where defined: what was created and what was there.
pub(crate) async fn ensure(client: &Client, tables: &[TableDefinition]) -> Result<MigrationReport> {
    let mut report = MigrationReport::default();
    let mut created = Vec::with_capacity(tables.len());
    // All creations first, so the tables become active in parallel.
    for table in tables {
        created.push(create_table(client, table).await?);
    }
    for (table, created) in tables.iter().zip(created) {
        let description = wait_active(client, &table.name).await?;
        check(table, &description)?;
        record(&mut report, created, format!("table {:?}", table.name));
    }
    for table in tables {
        if let Some(attribute) = table.ttl.as_deref() {
            let enabled = enable_ttl(client, &table.name, attribute).await?;
            let object = format!("table {:?}: time to live on {attribute:?}", table.name);
            record(&mut report, enabled, object);
        }
    }
    Ok(report)
}

fn record(report: &mut MigrationReport, created: bool, object: String) {
    if created {
        report.created.push(object);
    } else {
        report.present.push(object);
    }
}

/// How the live table differs from its definition, TTL included; a missing table is one
/// difference.
pub(crate) async fn differences(
    client: &Client,
    table: &TableDefinition,
) -> Result<Vec<SchemaDifference>> {
    let difference = |difference: String| SchemaDifference {
        object: format!("table {:?}", table.name),
        difference,
    };
    let description = match client.describe_table().table_name(&table.name).send().await {
        Ok(output) => output.table,
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) =>
        {
            None
        }
        Err(err) => return Err(error::sdk(err)),
    };
    let Some(description) = description else {
        return Ok(vec![difference("missing".to_owned())]);
    };
    let mut found: Vec<SchemaDifference> = table
        .differences(&description)
        .into_iter()
        .map(difference)
        .collect();
    if !table.tags.is_empty()
        && let Some(tags) = tags_of(client, &description).await?
    {
        found.extend(table.tag_differences(&tags).into_iter().map(difference));
    }
    if let Some(wanted) = table.ttl.as_deref() {
        let (status, attribute) = ttl_of(client, &table.name).await?;
        if !ttl_on(status.as_ref()) {
            found.push(difference(format!(
                "time to live is not enabled, expected on {wanted:?}"
            )));
        } else if attribute.as_deref() != Some(wanted) {
            found.push(difference(format!(
                "time to live is on {attribute:?}, expected on {wanted:?}"
            )));
        }
    }
    Ok(found)
}

/// The live table's tags (ListTagsOfResource on its ARN, every page); `None` where the
/// server cannot say: DynamoDB Local answers every tagging call with
/// `UnknownOperationException` (it accepts tags on CreateTable and drops them), so there
/// tags are not compared.
pub(crate) async fn tags_of(
    client: &Client,
    description: &TableDescription,
) -> Result<Option<BTreeMap<String, String>>> {
    let mut tags = BTreeMap::new();
    let Some(arn) = description.table_arn() else {
        return Ok(Some(tags));
    };
    let mut next: Option<String> = None;
    loop {
        let sent = client
            .list_tags_of_resource()
            .resource_arn(arn)
            .set_next_token(next)
            .send()
            .await;
        let output = match sent {
            Ok(output) => output,
            Err(err) if err.code() == Some("UnknownOperationException") => {
                tracing::debug!(arn, "the server does not support tags: not compared");
                return Ok(None);
            }
            Err(err) => return Err(error::sdk(err)),
        };
        for tag in output.tags() {
            tags.insert(tag.key().to_owned(), tag.value().to_owned());
        }
        match output.next_token {
            Some(token) => next = Some(token),
            None => return Ok(Some(tags)),
        }
    }
}

/// The live table's global secondary indexes that `table` does not define; none for a
/// missing table.
pub(crate) async fn undeclared(
    client: &Client,
    table: &TableDefinition,
) -> Result<Vec<SchemaDifference>> {
    let description = match client.describe_table().table_name(&table.name).send().await {
        Ok(output) => output.table,
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) =>
        {
            None
        }
        Err(err) => return Err(error::sdk(err)),
    };
    Ok(description
        .iter()
        .flat_map(TableDescription::global_secondary_indexes)
        .filter_map(|index| index.index_name())
        .filter(|name| !table.indexes.iter().any(|i| i.name == *name))
        .map(|name| SchemaDifference {
            object: format!("table {:?}", table.name),
            difference: format!("index {name:?} is not declared: left alone"),
        })
        .collect())
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

/// Creates the table unless it exists; does not wait. True if this call created it.
pub(crate) async fn create_table(client: &Client, table: &TableDefinition) -> Result<bool> {
    match table.create_request(client)?.send().await {
        Ok(_) => {
            tracing::info!(table = table.name, "created dynamodb table");
            Ok(true)
        }
        // Already there (or being created by a concurrent migrate): wait for it below.
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            Ok(false)
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
pub(crate) fn check(table: &TableDefinition, description: &TableDescription) -> Result<()> {
    let differences = table.differences(description);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(DynamoError::Schema {
            table: table.name.clone(),
            why: differences.join("; "),
        }
        .into())
    }
}

pub(crate) fn ttl_on(status: Option<&TimeToLiveStatus>) -> bool {
    matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    )
}

/// The table's TTL status and attribute.
pub(crate) async fn ttl_of(
    client: &Client,
    table: &str,
) -> Result<(Option<TimeToLiveStatus>, Option<String>)> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(error::sdk)?
        .time_to_live_description;
    Ok(described.map_or((None, None), |d| (d.time_to_live_status, d.attribute_name)))
}

/// Enables native TTL on `attribute` unless it is; true if this call enabled it.
pub(crate) async fn enable_ttl(client: &Client, table: &str, attribute: &str) -> Result<bool> {
    let (status, current) = ttl_of(client, table).await?;
    if ttl_on(status.as_ref()) {
        if current.as_deref() == Some(attribute) {
            return Ok(false);
        }
        return Err(DynamoError::Schema {
            table: table.to_owned(),
            why: format!("its TTL is on attribute {current:?}, not {attribute:?}"),
        }
        .into());
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(attribute)
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
            tracing::info!(table, attribute, "enabled dynamodb native TTL");
            Ok(true)
        }
        // A concurrent migrate enabled it between our look and our update.
        Err(err) if err.code() == Some("ValidationException") => {
            let (status, current) = ttl_of(client, table).await?;
            if ttl_on(status.as_ref()) && current.as_deref() == Some(attribute) {
                Ok(false)
            } else {
                Err(error::sdk(err))
            }
        }
        Err(err) => Err(error::sdk(err)),
    }
}
