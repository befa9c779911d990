//! Cases for input at the edges: what every backend refuses, with the same typed error, and
//! what it accepts, read back identically.

use storekit_core::chrono::{DateTime, TimeZone as _, Utc};
use storekit_core::serde_json::{Value, json};
use storekit_core::{
    Error, NewOAuthAccount, NewUser, OAuthAccountPatch, PageRequest, UserId, UserPatch,
};

use crate::Fixture;

fn assert_invalid(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(Error::InvalidInput { what: found, .. }) if found == what => {}
        other => panic!("expected InvalidInput for {what}, got {other:?}"),
    }
}

fn extra(value: Value) -> storekit_core::user::Extra {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The deepest nesting under a key of `extra` that every backend stores: with `extra` itself
/// as level 1, its innermost object is at `MAX_EXTRA_DEPTH`.
const DEEPEST: usize = storekit_core::validate::MAX_EXTRA_DEPTH - 1;

/// `depth` nested objects, the outermost counting as 1.
fn nested(depth: usize) -> Value {
    (1..depth).fold(json!({"leaf": true}), |inner, _| json!({ "n": inner }))
}

/// NUL cannot be stored by PostgreSQL, so no backend accepts it in any string.
pub async fn nul_characters_are_refused(f: &Fixture) {
    let store = &f.auth;
    assert_invalid(
        store
            .create_user(NewUser::new("nul@example.com", "ha\0sh"))
            .await,
        "hashed_password",
    );
    let mut user = NewUser::new("nul@example.com", "hash");
    user.extra = extra(json!({"name": "a\0b"}));
    assert_invalid(store.create_user(user).await, "extra");
    let mut user = NewUser::new("nul@example.com", "hash");
    user.extra = extra(json!({"ke\0y": 1}));
    assert_invalid(store.create_user(user).await, "extra");

    let user = store
        .create_user(NewUser::new("nul@example.com", "hash"))
        .await
        .expect("a clean user");
    assert_invalid(
        store
            .update_user(user.id, UserPatch::new().hashed_password("x\0"))
            .await,
        "hashed_password",
    );
    let account = NewOAuthAccount::new("github", "1", "nul@example.com", "tok\0en");
    assert_invalid(
        store.add_oauth_account(user.id, account).await,
        "access_token",
    );
    let account = NewOAuthAccount::new("github", "1", "nul@example.com", "token");
    store
        .add_oauth_account(user.id, account)
        .await
        .expect("a clean account");
    assert_invalid(
        store
            .update_oauth_account(
                user.id,
                "github",
                "1",
                OAuthAccountPatch::new().refresh_token(Some("r\0".into())),
            )
            .await,
        "refresh_token",
    );
    let stored = store.get_user(user.id).await.expect("get").expect("kept");
    assert_eq!(
        (stored.hashed_password.as_str(), stored.version),
        ("hash", 1)
    );
}

/// Numbers, nesting and keys in `extra`: inside the range every backend stores, a user reads
/// back exactly as `create_user` returned it (integral floats become integers everywhere);
/// outside it, `InvalidInput` up front.
pub async fn extra_reads_back_as_returned(f: &Fixture) {
    let store = &f.auth;
    let mut user = NewUser::new("numbers@example.com", "hash");
    user.extra = extra(json!({
        "three": 3.0,
        "minus_zero": -0.0,
        "tenth": 0.1,
        "third": 1.0 / 3.0,
        "big": 1e125,
        "tiny": -1e-129,
        "huge_integral": 1e20,
        "i64_max": i64::MAX,
        "i64_min": i64::MIN,
        "u64_max": u64::MAX,
        "deep": nested(DEEPEST),
        "unicode ключ 🔑": ["é", "e\u{301}", null, true, []],
    }));
    let created = store.create_user(user).await.expect("create");
    assert_eq!(created.extra["three"], json!(3));
    assert_eq!(created.extra["minus_zero"], json!(0));
    assert_eq!(created.extra["tenth"], json!(0.1));
    let read = store
        .get_user(created.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(read.extra, created.extra);
    let by_email = store
        .get_user_by_email("NUMBERS@example.com")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(by_email.extra, created.extra);
    let listed = store
        .list_users(PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(listed.items[0].extra, created.extra);

    let updated = store
        .update_user(
            created.id,
            UserPatch::new()
                .extra(&json!({"five": 5.0, "deep": nested(DEEPEST)}))
                .expect("extra"),
        )
        .await
        .expect("update");
    assert_eq!(updated.extra["five"], json!(5));
    let read = store
        .get_user(created.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(read.extra, updated.extra);

    for bad in [
        json!({"n": 1e126}),
        json!({"n": -1e126}),
        json!({"n": f64::MAX}),
        json!({"n": 1e-131}),
        json!({"deep": nested(DEEPEST + 1)}),
        json!({"": 1}),
        json!({"a": {"": 1}}),
    ] {
        let mut user = NewUser::new("bad-extra@example.com", "hash");
        user.extra = extra(bad.clone());
        assert_invalid(store.create_user(user).await, "extra");
        let patch = UserPatch::new().extra(&bad).expect("an object");
        assert_invalid(store.update_user(created.id, patch).await, "extra");
    }
    let read = store
        .get_user(created.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        read.version, updated.version,
        "refused updates write nothing"
    );
    assert!(
        store
            .get_user_by_email("bad-extra@example.com")
            .await
            .expect("get")
            .is_none()
    );
}

/// OAuth expiry times at both ends of the years every backend stores (1 to 9999) read back to
/// the microsecond; outside them, `InvalidInput`.
pub async fn oauth_expiry_at_the_ends_of_time(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("time@example.com", "hash"))
        .await
        .expect("create");
    let last: DateTime<Utc> = Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .expect("a time")
        + storekit_core::chrono::TimeDelta::microseconds(999_999);
    let first: DateTime<Utc> = Utc
        .with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .expect("a time");
    let account = NewOAuthAccount::new("github", "late", "time@example.com", "t").expires_at(last);
    store
        .add_oauth_account(user.id, account)
        .await
        .expect("year 9999");
    let account =
        NewOAuthAccount::new("github", "early", "time@example.com", "t").expires_at(first);
    store
        .add_oauth_account(user.id, account)
        .await
        .expect("year 1");
    let mut accounts = store.oauth_accounts(user.id).await.expect("accounts");
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    let expiries: Vec<_> = accounts.iter().map(|a| a.expires_at).collect();
    assert_eq!(expiries, [Some(first), Some(last)]);

    let beyond = last + storekit_core::chrono::TimeDelta::seconds(1);
    let account =
        NewOAuthAccount::new("github", "later", "time@example.com", "t").expires_at(beyond);
    assert_invalid(
        store.add_oauth_account(user.id, account).await,
        "expires_at",
    );
    let before = first - storekit_core::chrono::TimeDelta::seconds(1);
    let patch = OAuthAccountPatch::new().access_token("t2", Some(before));
    assert_invalid(
        store
            .update_oauth_account(user.id, "github", "early", patch)
            .await,
        "expires_at",
    );
}

/// When two rules apply, every backend reports the same one: a missing user before a taken
/// OAuth account, a wrong id kind before anything else, and a bad cursor as `"cursor"`.
pub async fn one_answer_when_two_rules_apply(f: &Fixture) {
    let store = &f.auth;
    let owner = store
        .create_user(NewUser::new("owner@example.com", "hash"))
        .await
        .expect("owner");
    let gone = store
        .create_user(NewUser::new("gone@example.com", "hash"))
        .await
        .expect("gone");
    store.delete_user(gone.id).await.expect("delete");
    let account = || NewOAuthAccount::new("github", "42", "owner@example.com", "token");
    store
        .add_oauth_account(owner.id, account())
        .await
        .expect("link");
    let err = store
        .add_oauth_account(gone.id, account())
        .await
        .expect_err("deleted user, taken account");
    assert_matches!(err, Error::NotFound { what: "user" });

    let foreign = match store.id_kind() {
        storekit_core::IdKind::Uuid => UserId::Int(1),
        storekit_core::IdKind::Int => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
    };
    let patch = OAuthAccountPatch::new().account_email("x@example.com");
    assert_matches!(
        store
            .update_oauth_account(foreign, "github", "42", patch)
            .await,
        Err(Error::InvalidInput { .. })
    );
    assert_matches!(
        store.remove_oauth_account(foreign, "github", "42").await,
        Err(Error::InvalidInput { .. })
    );
    assert_invalid(
        store
            .list_users(PageRequest::after(5, "not a cursor"))
            .await,
        "cursor",
    );
}
