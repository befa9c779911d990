//! storekit backend for Amazon DynamoDB.
