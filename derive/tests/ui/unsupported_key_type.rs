use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, storekit::Record)]
#[storekit(table = "products", partition = id, index(name = "by-tags", partition = tags))]
struct Product {
    id: String,
    tags: BTreeMap<String, String>,
}

fn main() {}
