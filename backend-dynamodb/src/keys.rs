//! The users table's key layout, the table in the [crate docs](crate#tables) as code: the
//! `pk` and `sk` of every item the user, OAuth and token stores write, and the attribute of
//! claims and tokens that names their user. The three stores and transfer all take their keys
//! from here, so none of them imports another for a key.

use storekit_core::UserId;

use crate::item::{Item, PK, key, s};
use crate::txn::Condition;

/// The sort key of a user item.
pub(crate) const USER_SK: &str = "USER";
/// The attribute of claims and tokens that names their user.
pub(crate) const USER_ID: &str = "user_id";
pub(crate) const EMAIL_SK: &str = "EMAIL";
pub(crate) const SEQ_PK: &str = "#SEQ";
pub(crate) const SEQ_SK: &str = "USER_ID";

/// The partition of a user: its item, links and token references.
pub(crate) fn user_pk(id: UserId) -> String {
    format!("USER#{id}")
}

pub(crate) fn email_pk(email_key: &str) -> String {
    format!("EMAIL#{email_key}")
}

/// The sort key prefix of links in a user's partition, and the key prefix of claims.
pub(crate) const OAUTH_PREFIX: &str = "OAUTH#";
const CLAIM_SK: &str = "OAUTH";

/// The pair as one key part; the provider's length makes it unambiguous whatever `#`s the
/// provider or account id contain.
pub(crate) fn reference(provider: &str, account_id: &str) -> String {
    format!("{}#{provider}#{account_id}", provider.len())
}

/// The key of the claim for a reference.
pub(crate) fn claim_key(reference: &str) -> Item {
    key(format!("{OAUTH_PREFIX}{reference}"), CLAIM_SK)
}

pub(crate) fn link_key(user: UserId, reference: &str) -> Item {
    key(user_pk(user), format!("{OAUTH_PREFIX}{reference}"))
}

/// The claim is absent (already swept) or still names this user.
pub(crate) fn claim_of(user: UserId) -> Condition {
    Condition::new("attribute_not_exists(#pk) OR #user_id = :user_id")
        .name("#pk", PK)
        .name("#user_id", USER_ID)
        .value(":user_id", s(user.to_string()))
}

/// The key prefix of token items, and the sort key prefix of their references.
pub(crate) const TOKEN_PREFIX: &str = "TOKEN#";
const TOKEN_SK: &str = "TOKEN";

/// The key of the token item for a token hash.
pub(crate) fn token_key(hash: &str) -> Item {
    key(format!("{TOKEN_PREFIX}{hash}"), TOKEN_SK)
}

pub(crate) fn reference_key(user: UserId, hash: &str) -> Item {
    key(user_pk(user), format!("{TOKEN_PREFIX}{hash}"))
}
