use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, storekit::Record)]
#[storekit(
    table = "products",
    partition = id,
    index(name = "product-name-index", partition = name, sort = updated_at),
)]
struct Product {
    id: String,
    name: String,
    updated_at: f64,
}

fn main() {
    let _ = Product::query_product_index("lamp");
}
