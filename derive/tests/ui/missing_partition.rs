use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, storekit::Record)]
#[storekit(table = "orders", sort = order_id)]
struct Order {
    customer_id: String,
    order_id: String,
}

fn main() {}
