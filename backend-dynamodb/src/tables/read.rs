//! Reads: single records and batches by key, queries on the table or a global secondary
//! index, scans and counts. All consistent unless the caller asks for an eventual read
//! (`ConsistentRead=false`, half the read units), except queries on an index, which DynamoDB
//! cannot read consistently.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use storekit_core::Result;
use storekit_core::table::{
    Consistency, Fetched, IndexQuery, Order, Projection, Record, RecordKey, SortCondition,
    TableScan, TableSchema,
};

use super::{Placeholders, filter, item};
use crate::DynamoDbStore;
use crate::batch;
use crate::count::Counted as _;
use crate::error;
use crate::item::Item;

/// Most items one filtered request reads when few have matched so far: DynamoDB stops at 1 MB
/// anyway, and this keeps a request's cost bounded for small items.
const MAX_FILTERED_READ: usize = 1000;

fn limit(fetch: usize) -> i32 {
    i32::try_from(fetch).unwrap_or(i32::MAX)
}

/// The `ProjectionExpression` of a checked selection, naming its attributes in `p`: the
/// paths the layer asks for (which hold the keys it needs) and the version, so that a
/// projected record keeps it.
fn projection(schema: &TableSchema, fetch: &Projection, p: &mut Placeholders) -> String {
    projection_of(schema, fetch, p, true)
}

/// [`projection`], with the version only when `version`: a global secondary index that does
/// not project it refuses a `ProjectionExpression` naming it.
fn projection_of(
    schema: &TableSchema,
    fetch: &Projection,
    p: &mut Placeholders,
    version: bool,
) -> String {
    let mut paths: Vec<String> = fetch
        .paths()
        .iter()
        .map(|path| filter::path(path, p))
        .collect();
    if version {
        paths.push(p.name(item::version_attribute(schema)));
    }
    paths.join(", ")
}

/// One Query or Scan answer.
struct Answer {
    /// `ScannedCount`: the items it read, before the filter.
    scanned: i32,
    items: Vec<Item>,
    last: Option<Item>,
}

/// How the requests of one page read: the records it wants, whether a filter may drop what
/// is read, and how many items it may read at most.
struct Reads {
    fetch: usize,
    filtered: bool,
    budget: Option<u64>,
}

impl Reads {
    /// Sends requests (`send(limit, start)`) from `start` on until `fetch` records have
    /// matched, the range ends, or the budget is read. DynamoDB's `Limit` counts the items a
    /// request reads, before the filter: each request reads about as many as the matches so
    /// far say are needed for the rest of the page, and never more than the budget left, so
    /// that a page cut by its budget ends exactly on the `LastEvaluatedKey` of its last
    /// request.
    async fn run_from<F, Fut>(
        &self,
        schema: &TableSchema,
        table: &str,
        mut start: Option<Item>,
        mut send: F,
    ) -> Result<Fetched>
    where
        F: FnMut(i32, Option<Item>) -> Fut,
        Fut: Future<Output = Result<Answer>>,
    {
        let mut fetched = Fetched::default();
        let (mut read, mut matched) = (0usize, 0usize);
        while fetched.records.len() < self.fetch {
            let wanted = self.fetch - fetched.records.len();
            let mut to_read = if self.filtered && matched > 0 {
                wanted
                    .saturating_mul(read)
                    .div_ceil(matched)
                    .min(MAX_FILTERED_READ)
            } else if self.filtered && read > 0 {
                MAX_FILTERED_READ
            } else {
                wanted
            }
            .max(wanted);
            let left = self
                .budget
                .map(|budget| budget.saturating_sub(fetched.read));
            if let Some(left) = left {
                to_read = to_read.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            let answer = send(limit(to_read), start).await?;
            let scanned = u64::try_from(answer.scanned).unwrap_or_default();
            fetched.read += scanned;
            read += usize::try_from(scanned).unwrap_or(usize::MAX);
            matched += answer.items.len();
            // Past the page's end, the rest of what this read matched is read again by the next
            // page, which starts after the last record returned.
            for stored in answer.items.iter().take(wanted) {
                fetched.records.push(item::record(schema, table, stored)?);
            }
            start = answer.last.filter(|key| !key.is_empty());
            let Some(last) = &start else { break };
            if fetched.records.len() < self.fetch
                && self.budget.is_some_and(|budget| fetched.read >= budget)
            {
                fetched.cut = Some(item::document(schema, last, table)?);
                break;
            }
        }
        // Without a filter, each item read was returned: the counts are exact.
        if !self.filtered && fetched.read == fetched.records.len() as u64 {
            fetched.read_through = Some((1..=fetched.read).collect());
        }
        Ok(fetched)
    }
}

/// What every Query request of one query repeats, page after page: the table or index, the
/// key condition, the filter and projection with their placeholders, and the consistency.
/// Reading records and counting them (`Select=COUNT`) page through the same requests.
struct QueryRequest<'a> {
    table: &'a str,
    index: Option<&'a str>,
    key_condition: String,
    filter: Option<String>,
    projection: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
    consistent: bool,
}

impl<'a> QueryRequest<'a> {
    /// The request of `query` on `table`, projected to `fetch` if given.
    fn new(
        schema: &'a TableSchema,
        table: &'a str,
        query: &IndexQuery<'_>,
        fetch: Option<&Projection>,
    ) -> Result<Self> {
        let index = query.index.map(|i| &schema.indexes()[i]);
        let mut p = Placeholders::default();
        let key_condition = key_condition(schema, query, &mut p);
        let filter = query
            .filter
            .map(|condition| filter::render(condition, &mut p))
            .transpose()?;
        // DynamoDB filters the whole item, then projects what matched. A partial index holds
        // no version (the layer reads its records at version 0).
        let partial = index.is_some_and(|i| !i.projection().is_all());
        let projection = fetch.map(|fetch| projection_of(schema, fetch, &mut p, !partial));
        Ok(Self {
            table,
            index: index.map(|i| i.name()),
            key_condition,
            filter,
            projection,
            names: p.names(),
            values: p.values(),
            // A GSI cannot be read consistently; the table as the caller asks.
            consistent: index.is_none() && query.consistency == Consistency::ReadAfterWrite,
        })
    }

    /// The request of the page that starts after `start` (the first if none).
    fn page(&self, client: &Client, start: Option<Item>) -> QueryFluentBuilder {
        client
            .query()
            .table_name(self.table)
            .set_index_name(self.index.map(str::to_owned))
            .key_condition_expression(&self.key_condition)
            .set_filter_expression(self.filter.clone())
            .set_projection_expression(self.projection.clone())
            .set_expression_attribute_names(self.names.clone())
            .set_expression_attribute_values(self.values.clone())
            .consistent_read(self.consistent)
            .set_exclusive_start_key(start)
    }
}

impl DynamoDbStore {
    /// One record, read consistently.
    pub(super) async fn get_record(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<Option<Record>> {
        let table = self.table_name(schema);
        self.get_item(schema, key)
            .await?
            .map(|stored| item::record(schema, &table, &stored))
            .transpose()
    }

    /// One record's paths in `fetch`, read consistently: one GetItem with a
    /// `ProjectionExpression`.
    pub(super) async fn get_record_selected(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: &Projection,
    ) -> Result<Option<Record>> {
        self.get_record_at(schema, key, Some(fetch), Consistency::ReadAfterWrite)
            .await
    }

    /// One record (its paths in `fetch`, if given) at `consistency`: one GetItem.
    pub(super) async fn get_record_at(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        fetch: Option<&Projection>,
        consistency: Consistency,
    ) -> Result<Option<Record>> {
        let table = self.table_name(schema);
        let mut p = Placeholders::default();
        let expression = fetch.map(|fetch| projection(schema, fetch, &mut p));
        self.client
            .get_item()
            .table_name(&table)
            .set_key(Some(item::key_item(schema, key)))
            .consistent_read(consistency == Consistency::ReadAfterWrite)
            .set_projection_expression(expression)
            .set_expression_attribute_names(p.names())
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item
            .filter(|stored| !stored.is_empty())
            .map(|stored| item::record(schema, &table, &stored))
            .transpose()
    }

    /// Whether a record exists: a consistent GetItem of its partition key alone.
    pub(super) async fn contains_record(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<bool> {
        let table = self.table_name(schema);
        let mut p = Placeholders::default();
        let projection = p.name(schema.partition().field());
        let found = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(item::key_item(schema, key)))
            .consistent_read(true)
            .projection_expression(projection)
            .set_expression_attribute_names(p.names())
            .send_counted()
            .await
            .map_err(error::sdk)?
            .item;
        Ok(found.is_some_and(|item| !item.is_empty()))
    }

    /// Records by key, in the order of `keys`: BatchGetItem per 100 distinct keys.
    pub(super) async fn get_records(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>> {
        self.get_records_selected(schema, keys, None, Consistency::ReadAfterWrite)
            .await
    }

    /// Records by key as [`Self::get_records`] reads them, each projected to `fetch` by the
    /// `BatchGetItem`'s `ProjectionExpression`, at `consistency`.
    pub(super) async fn get_records_selected(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
        fetch: Option<&Projection>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Record>>> {
        let table = self.table_name(schema);
        let mut p = Placeholders::default();
        let expression = fetch.map(|fetch| projection(schema, fetch, &mut p));
        let names = p.names().unwrap_or_default();
        let mut distinct: Vec<&RecordKey> = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for key in keys {
            if seen.insert(key) {
                distinct.push(key);
            }
        }
        let requests = distinct
            .iter()
            .map(|key| item::key_item(schema, key))
            .collect();
        let mut found: HashMap<RecordKey, Record> = HashMap::with_capacity(keys.len());
        for stored in batch::get_all_at(
            &self.client,
            &table,
            requests,
            expression.as_deref().map(|e| (e, &names)),
            consistency == Consistency::ReadAfterWrite,
        )
        .await?
        {
            let record = item::record(schema, &table, &stored)?;
            found.insert(record.key.clone(), record);
        }
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }

    /// Up to `query.fetch` records of a query that meet its filter, following 1 MB pages,
    /// within its read budget.
    pub(super) async fn query_records(
        &self,
        schema: &TableSchema,
        query: &IndexQuery<'_>,
        fetch: Option<&Projection>,
    ) -> Result<Fetched> {
        let table = self.table_name(schema);
        let index = query.index.map(|i| &schema.indexes()[i]);
        let (partition, sort) = match index {
            Some(index) => (index.partition(), index.sort()),
            None => (schema.partition(), schema.sort()),
        };
        // Where the previous page ended: the record's table key, plus its key in the index.
        let start: Option<Item> = query.after.map(|after| {
            let mut key = item::key_item(schema, &after.key);
            if index.is_some() {
                key.insert(
                    partition.field().to_owned(),
                    item::key_value(query.partition),
                );
                if let (Some(sort), Some(value)) = (sort, &after.sort) {
                    key.insert(sort.field().to_owned(), item::key_value(value));
                }
            }
            key
        });
        let request = QueryRequest::new(schema, &table, query, fetch)?;
        let reads = Reads {
            fetch: query.fetch,
            filtered: request.filter.is_some(),
            budget: query.budget,
        };
        reads
            .run_from(schema, &table, start, |limit, start| {
                let request = request
                    .page(&self.client, start)
                    .scan_index_forward(query.order == Order::Ascending)
                    .limit(limit);
                async move {
                    let output = request.send_counted().await.map_err(error::sdk)?;
                    Ok(Answer {
                        scanned: output.scanned_count,
                        items: output.items.unwrap_or_default(),
                        last: output.last_evaluated_key,
                    })
                }
            })
            .await
    }

    /// Up to `scan.fetch` records meeting its filter after `scan.after`, in DynamoDB's scan
    /// order, following 1 MB pages, within its read budget.
    pub(super) async fn scan_records(
        &self,
        schema: &TableSchema,
        scan: &TableScan<'_>,
    ) -> Result<Fetched> {
        let table = self.table_name(schema);
        let mut p = Placeholders::default();
        let filter = scan
            .filter
            .map(|condition| filter::render(condition, &mut p))
            .transpose()?;
        let (names, values) = (p.names(), p.values());
        let reads = Reads {
            fetch: scan.fetch,
            filtered: filter.is_some(),
            budget: scan.budget,
        };
        let start = scan.after.map(|key| item::key_item(schema, key));
        reads
            .run_from(schema, &table, start, |limit, start| {
                let request = self
                    .client
                    .scan()
                    .table_name(&table)
                    .set_filter_expression(filter.clone())
                    .set_expression_attribute_names(names.clone())
                    .set_expression_attribute_values(values.clone())
                    .consistent_read(scan.consistency == Consistency::ReadAfterWrite)
                    .set_segment(scan.segment.map(|s| segment_number(s.index)))
                    .set_total_segments(scan.segment.map(|s| segment_number(s.total)))
                    .limit(limit)
                    .set_exclusive_start_key(start);
                async move {
                    let output = request.send_counted().await.map_err(error::sdk)?;
                    Ok(Answer {
                        scanned: output.scanned_count,
                        items: output.items.unwrap_or_default(),
                        last: output.last_evaluated_key,
                    })
                }
            })
            .await
    }

    /// The number of records of a query's range meeting its filter: `Select=COUNT` Query
    /// requests over every 1 MB page of the range, consistent on the table unless asked
    /// otherwise (a GSI is eventual).
    pub(super) async fn count_query_records(
        &self,
        schema: &TableSchema,
        query: &IndexQuery<'_>,
    ) -> Result<u64> {
        let table = self.table_name(schema);
        let request = QueryRequest::new(schema, &table, query, None)?;
        let mut start = None;
        let mut count = 0u64;
        loop {
            let output = request
                .page(&self.client, start)
                .select(Select::Count)
                .send_counted()
                .await
                .map_err(error::sdk)?;
            count += u64::try_from(output.count).unwrap_or_default();
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    /// The number of records: a consistent `Select=COUNT` Scan over every page.
    pub(super) async fn count_records(&self, schema: &TableSchema) -> Result<u64> {
        let table = self.table_name(schema);
        let mut start = None;
        let mut count = 0u64;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&table)
                .consistent_read(true)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send_counted()
                .await
                .map_err(error::sdk)?;
            count += u64::try_from(output.count).unwrap_or_default();
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if start.is_none() {
                return Ok(count);
            }
        }
    }
}

/// A checked segment number as DynamoDB takes it (core keeps them to 1,000,000).
fn segment_number(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The `KeyConditionExpression` of a query: its partition, and its sort condition if any,
/// naming attributes and values in `p`.
fn key_condition(schema: &TableSchema, query: &IndexQuery<'_>, p: &mut Placeholders) -> String {
    let (partition, sort) = match query.index.map(|i| &schema.indexes()[i]) {
        Some(index) => (index.partition(), index.sort()),
        None => (schema.partition(), schema.sort()),
    };
    let mut expression = format!(
        "{} = {}",
        p.name(partition.field()),
        p.value(item::key_value(query.partition))
    );
    if let (Some(condition), Some(sort)) = (query.sort, sort) {
        let name = p.name(sort.field());
        let mut value = |v| p.value(item::key_value(v));
        let clause = match condition {
            SortCondition::Eq(x) => format!("{name} = {}", value(x)),
            SortCondition::Lt(x) => format!("{name} < {}", value(x)),
            SortCondition::Le(x) => format!("{name} <= {}", value(x)),
            SortCondition::Gt(x) => format!("{name} > {}", value(x)),
            SortCondition::Ge(x) => format!("{name} >= {}", value(x)),
            SortCondition::Between(low, high) => {
                format!("{name} BETWEEN {} AND {}", value(low), value(high))
            }
            SortCondition::BeginsWith(x) => format!("begins_with({name}, {})", value(x)),
        };
        expression = format!("{expression} AND {clause}");
    }
    expression
}
