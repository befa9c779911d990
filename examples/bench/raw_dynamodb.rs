//! The DynamoDB baseline: aws-sdk-dynamodb on two tables of its own (string `pk` and `sk`,
//! binary value `v`), strongly consistent reads, BatchWriteItem at 25 requests per call with
//! four calls in flight and unprocessed items resent with backoff, and Query followed to the
//! last page. Also the request counter that both peers' clients carry.
//!
//! Products are laid out as storekit's DynamoDB tables backend lays out a table: a table of
//! their own keyed by `id`, the record's fields as native attributes beside its version, and
//! the GSI `product-name-index` on (name, updated_at) projecting every attribute. An item is
//! built and read field by field, as hand-written code would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnValue,
    ScalarAttributeType, TableStatus, TransactWriteItem, WriteRequest,
};
use storekit::futures::{StreamExt as _, TryStreamExt as _, stream};
use storekit::uuid::Uuid;
use storekit::{BoxError, async_trait};

use crate::targets::{Kv, NAME_INDEX, PASSWORD_HASH, Product, Products, Users};

/// The most requests one BatchWriteItem call may hold.
const WRITE_BATCH: usize = 25;
/// Batch calls in flight at once for one set_many or delete_many (storekit sends four too).
const IN_FLIGHT: usize = 4;
/// Rounds of resending unprocessed items before giving up.
const BATCH_ROUNDS: u32 = 10;

type Item = HashMap<String, AttributeValue>;

/// Counts every HTTP request a client sends, retries included.
#[derive(Debug)]
struct CountRequests(Arc<AtomicU64>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    // Called once per attempt, just before it goes on the wire.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A client for `endpoint` whose requests are counted in `counter`. Credentials and region come
/// from the environment if set; DynamoDB Local accepts any, so test ones stand in otherwise.
pub(crate) async fn client(endpoint: &str, counter: Arc<AtomicU64>) -> Client {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(Credentials::new("test", "test", None, None, "bench"));
    }
    let shared = loader.load().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&shared)
        .interceptor(CountRequests(counter))
        .build();
    Client::from_conf(config)
}

/// Reads of a product before an update gives up, as storekit's `update` does.
const UPDATE_ATTEMPTS: usize = 100;

/// The baseline's tables: two made at the start, and one for products that the tables
/// workload makes and drops.
#[derive(Debug)]
pub(crate) struct RawDynamo {
    client: Client,
    kv_table: String,
    users_table: String,
    products_table: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

impl RawDynamo {
    /// Creates the tables `{prefix}kv` and `{prefix}users` and waits until they are active.
    pub(crate) async fn create(client: Client, prefix: &str) -> Result<Self, BoxError> {
        let raw = Self {
            client,
            kv_table: format!("{prefix}kv"),
            users_table: format!("{prefix}users"),
            products_table: format!("{prefix}products"),
        };
        for table in [&raw.kv_table, &raw.users_table] {
            raw.create_table(table).await?;
        }
        Ok(raw)
    }

    async fn create_table(&self, table: &str) -> Result<(), BoxError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        self.client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await?;
        self.wait_active(table).await
    }

    /// Waits until `table` (and the indexes created with it) can be used.
    async fn wait_active(&self, table: &str) -> Result<(), BoxError> {
        for _ in 0..600 {
            let described = self
                .client
                .describe_table()
                .table_name(table)
                .send()
                .await?;
            let status = described.table.and_then(|t| t.table_status);
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("table {table} did not become active within a minute").into())
    }

    /// Deletes both tables.
    pub(crate) async fn remove(&self) -> Result<(), BoxError> {
        for table in [&self.kv_table, &self.users_table] {
            self.client.delete_table().table_name(table).send().await?;
        }
        Ok(())
    }

    /// Sends `requests` in BatchWriteItem calls, resending what comes back unprocessed.
    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), BoxError> {
        let chunks: Vec<Vec<WriteRequest>> =
            requests.chunks(WRITE_BATCH).map(<[_]>::to_vec).collect();
        stream::iter(chunks)
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn write_chunk(&self, mut chunk: Vec<WriteRequest>) -> Result<(), BoxError> {
        for round in 0..BATCH_ROUNDS {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.kv_table, chunk)
                .send()
                .await?;
            chunk = output
                .unprocessed_items
                .and_then(|mut tables| tables.remove(&self.kv_table))
                .unwrap_or_default();
            if chunk.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10 << round)).await;
        }
        Err("BatchWriteItem left items unprocessed after every retry".into())
    }
}

#[async_trait]
impl Kv for RawDynamo {
    async fn get(&self, namespace: &str, key_: &str) -> Result<bool, BoxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.kv_table)
            .set_key(Some(key(namespace, key_)))
            .consistent_read(true)
            .send()
            .await?;
        Ok(output.item.is_some_and(|item| item.contains_key("v")))
    }

    async fn set(&self, namespace: &str, key_: &str, value: &[u8]) -> Result<(), BoxError> {
        let mut item = key(namespace, key_);
        item.insert("v".to_owned(), AttributeValue::B(Blob::new(value)));
        self.client
            .put_item()
            .table_name(&self.kv_table)
            .set_item(Some(item))
            .send()
            .await?;
        Ok(())
    }

    async fn contains(&self, namespace: &str, key_: &str) -> Result<bool, BoxError> {
        // Only the key comes back, not the 1 KiB value.
        let output = self
            .client
            .get_item()
            .table_name(&self.kv_table)
            .set_key(Some(key(namespace, key_)))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await?;
        Ok(output.item.is_some())
    }

    async fn delete(&self, namespace: &str, key_: &str) -> Result<bool, BoxError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.kv_table)
            .set_key(Some(key(namespace, key_)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await?;
        Ok(output.attributes.is_some())
    }

    async fn set_many(&self, namespace: &str, items: &[(&str, &[u8])]) -> Result<(), BoxError> {
        let requests = items
            .iter()
            .map(|(key_, value)| {
                let mut item = key(namespace, *key_);
                item.insert("v".to_owned(), AttributeValue::B(Blob::new(*value)));
                let put = PutRequest::builder().set_item(Some(item)).build()?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<_, BoxError>>()?;
        self.write_all(requests).await
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<(), BoxError> {
        let requests = keys
            .iter()
            .map(|key_| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key(namespace, *key_)))
                    .build()?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<_, BoxError>>()?;
        self.write_all(requests).await
    }

    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        let mut count = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.kv_table)
                .key_condition_expression("pk = :ns")
                .expression_attribute_values(":ns", s(namespace))
                .projection_expression("sk")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            count += page.items().len() as u64;
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(count),
            }
        }
    }
}

#[async_trait]
impl Users for RawDynamo {
    type Id = Uuid;

    /// The user and a claim on its email, in one transaction that fails if either exists:
    /// the only way DynamoDB can keep emails unique.
    async fn create_user(&self, email: &str) -> Result<Uuid, BoxError> {
        let id = Uuid::now_v7();
        let now = s(storekit::chrono::Utc::now().to_rfc3339());
        let email_key = email.to_lowercase();
        let mut user = key(format!("USER#{id}"), "USER");
        user.extend([
            ("email".to_owned(), s(email)),
            ("email_key".to_owned(), s(&email_key)),
            ("hashed_password".to_owned(), s(PASSWORD_HASH)),
            ("is_active".to_owned(), AttributeValue::Bool(true)),
            ("is_superuser".to_owned(), AttributeValue::Bool(false)),
            ("is_verified".to_owned(), AttributeValue::Bool(false)),
            ("created_at".to_owned(), now.clone()),
            ("updated_at".to_owned(), now),
            ("version".to_owned(), AttributeValue::N("1".to_owned())),
            ("extra".to_owned(), AttributeValue::M(HashMap::new())),
        ]);
        let mut claim = key(format!("EMAIL#{email_key}"), "EMAIL");
        claim.insert("user_id".to_owned(), s(id.to_string()));
        let put = |item: Item| -> Result<TransactWriteItem, BoxError> {
            let put = Put::builder()
                .table_name(&self.users_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        self.client
            .transact_write_items()
            .transact_items(put(user)?)
            .transact_items(put(claim)?)
            .send()
            .await?;
        Ok(id)
    }

    async fn get_user(&self, id: &Uuid) -> Result<bool, BoxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .set_key(Some(key(format!("USER#{id}"), "USER")))
            .consistent_read(true)
            .send()
            .await?;
        Ok(output.item.is_some())
    }
}

fn n(number: &impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// A product as an item at `version`.
fn product_item(product: &Product, version: u64) -> Item {
    HashMap::from([
        ("id".to_owned(), s(&product.id)),
        ("name".to_owned(), s(&product.name)),
        ("price_cents".to_owned(), n(&product.price_cents)),
        ("updated_at".to_owned(), n(&product.updated_at)),
        ("description".to_owned(), s(&product.description)),
        ("version".to_owned(), n(&version)),
    ])
}

/// A product and its version from an item.
fn product_of(item: &Item) -> Result<(Product, u64), BoxError> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(format!("the item's {name} is not a string")),
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(number)) => Ok(number.as_str()),
        _ => Err(format!("the item's {name} is not a number")),
    };
    let product = Product {
        id: text("id")?,
        name: text("name")?,
        price_cents: number("price_cents")?.parse()?,
        updated_at: number("updated_at")?.parse()?,
        description: text("description")?,
    };
    Ok((product, number("version")?.parse()?))
}

impl RawDynamo {
    /// The product and its version, read consistently, if it exists.
    async fn product(&self, id: &str) -> Result<Option<(Product, u64)>, BoxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.products_table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await?;
        output.item.as_ref().map(product_of).transpose()
    }
}

#[async_trait]
impl Products for RawDynamo {
    async fn create_products(&self) -> Result<(), BoxError> {
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let by_name = GlobalSecondaryIndex::builder()
            .index_name(NAME_INDEX)
            .key_schema(key("name", KeyType::Hash)?)
            .key_schema(key("updated_at", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()?;
        self.client
            .create_table()
            .table_name(&self.products_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("id", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("name", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("updated_at", ScalarAttributeType::N)?)
            .key_schema(key("id", KeyType::Hash)?)
            .global_secondary_indexes(by_name)
            .send()
            .await?;
        self.wait_active(&self.products_table).await
    }

    async fn drop_products(&self) -> Result<(), BoxError> {
        self.client
            .delete_table()
            .table_name(&self.products_table)
            .send()
            .await?;
        Ok(())
    }

    async fn insert_product(&self, product: &Product) -> Result<(), BoxError> {
        self.client
            .put_item()
            .table_name(&self.products_table)
            .set_item(Some(product_item(product, 1)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await?;
        Ok(())
    }

    async fn get_product(&self, id: &str) -> Result<Option<Product>, BoxError> {
        Ok(self.product(id).await?.map(|(product, _version)| product))
    }

    async fn update_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let (mut product, version) = self.product(id).await?.ok_or("no product to update")?;
            product.price_cents = price_cents;
            product.updated_at = updated_at;
            let written = self
                .client
                .put_item()
                .table_name(&self.products_table)
                .set_item(Some(product_item(&product, version + 1)))
                .condition_expression("#version = :read")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":read", n(&version))
                .send()
                .await;
            match written {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err("every update of the product lost to another write".into())
    }

    async fn newest_products(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError> {
        // One more than the page, to know whether another follows, as storekit's query does.
        let output = self
            .client
            .query()
            .table_name(&self.products_table)
            .index_name(NAME_INDEX)
            .key_condition_expression("#name = :name")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(name))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1)?)
            .send()
            .await?;
        let mut page = output
            .items()
            .iter()
            .map(|item| product_of(item).map(|(product, _version)| product))
            .collect::<Result<Vec<_>, _>>()?;
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }

    async fn patch_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        self.client
            .update_item()
            .table_name(&self.products_table)
            .key("id", s(id))
            .update_expression("SET #price = :price, #at = :at, #version = #version + :one")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_names("#price", "price_cents")
            .expression_attribute_names("#at", "updated_at")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":price", n(&price_cents))
            .expression_attribute_values(":at", n(&updated_at))
            .expression_attribute_values(":one", n(&1))
            .send()
            .await?;
        Ok(())
    }

    async fn newest_products_from(
        &self,
        name: &str,
        min_price: u64,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError> {
        // `Limit` counts items read before the filter: read on until the page (and one more,
        // to know whether another follows) is full, as a caller of the raw SDK must.
        let mut page = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.products_table)
                .index_name(NAME_INDEX)
                .key_condition_expression("#name = :name")
                .filter_expression("#price >= :min")
                .expression_attribute_names("#name", "name")
                .expression_attribute_names("#price", "price_cents")
                .expression_attribute_values(":name", s(name))
                .expression_attribute_values(":min", n(&min_price))
                .scan_index_forward(false)
                .limit(i32::try_from(limit + 1)?)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in output.items() {
                page.push(product_of(item).map(|(product, _version)| product)?);
            }
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if page.len() > limit || start.is_none() {
                break;
            }
        }
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }
}
