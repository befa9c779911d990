//! Cases for users, OAuth accounts and access tokens. Each runs with UUID and integer ids.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storekit_core::{
    Error, IdKind, LIMITS, NewOAuthAccount, NewUser, OAuthAccountPatch, PageRequest, UserId,
    UserPatch, chrono, now,
};

use crate::Fixture;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    display_name: String,
    age: u32,
    tags: Vec<String>,
    address: Address,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    city: String,
    zip: Option<String>,
}

fn profile() -> Profile {
    Profile {
        display_name: "Zoë 🚀".into(),
        age: 37,
        tags: vec!["admin".into(), "β-tester".into()],
        address: Address {
            city: "Zürich".into(),
            zip: None,
        },
    }
}

fn foreign_id(kind: IdKind) -> UserId {
    match kind {
        IdKind::Uuid => UserId::Int(1),
        IdKind::Int => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
    }
}

fn absent_id(kind: IdKind) -> UserId {
    match kind {
        IdKind::Uuid => UserId::Uuid(storekit_core::uuid::Uuid::now_v7()),
        IdKind::Int => UserId::Int(i64::MAX - 7),
    }
}

/// Create and read back a user: defaults, every field, typed extra fields, id kind.
pub async fn user_round_trip(f: &Fixture) {
    let store = &f.auth;
    let before = now();
    let new = NewUser::new("Ada@Example.com", "$argon2id$hash")
        .with_extra(&profile())
        .expect("extra");
    let user = store.create_user(new).await.expect("create");
    assert_eq!(user.id.kind(), store.id_kind());
    assert_eq!(user.email, "Ada@Example.com");
    assert_eq!(user.hashed_password, "$argon2id$hash");
    assert!(
        user.is_active && !user.is_superuser && !user.is_verified,
        "defaults"
    );
    assert_eq!(user.version, 1);
    assert!(user.created_at >= before && user.updated_at == user.created_at);

    let read = store
        .get_user(user.id)
        .await
        .expect("get")
        .expect("user exists");
    assert_eq!(read, user, "a user reads back exactly as created");
    assert_eq!(read.extra_as::<Profile>().expect("typed extra"), profile());

    let flagged = NewUser::new("root@example.com", "h")
        .superuser(true)
        .verified(true)
        .active(false);
    let flagged = store.create_user(flagged).await.expect("create flagged");
    let read = store
        .get_user(flagged.id)
        .await
        .expect("get")
        .expect("exists");
    assert!(!read.is_active && read.is_superuser && read.is_verified);
    assert_ne!(flagged.id, user.id);
}

/// `ÉLODIE@Example.com` is found as `élodie@example.COM` (and in decomposed form); the stored
/// email keeps the case it was given; malformed addresses are errors.
pub async fn email_lookup_is_unicode_case_insensitive(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("ÉLODIE@Example.com", "h"))
        .await
        .expect("create");
    for probe in [
        "élodie@example.COM",
        "E\u{301}lodie@EXAMPLE.com",
        " ÉLODIE@example.com ",
    ] {
        let found = store.get_user_by_email(probe).await.expect("lookup");
        assert_eq!(
            found.map(|u| u.id),
            Some(user.id),
            "{probe:?} must find the user"
        );
    }
    let found = store
        .get_user_by_email("elodie@example.com")
        .await
        .expect("lookup");
    assert!(found.is_none(), "e and é are different letters");
    let read = store.get_user(user.id).await.expect("get").expect("exists");
    assert_eq!(read.email, "ÉLODIE@Example.com", "original case kept");
    let err = store
        .get_user_by_email("not-an-email")
        .await
        .expect_err("malformed");
    assert_matches!(err, Error::InvalidInput { what: "email", .. });
    let err = store
        .create_user(NewUser::new("two@@at", "h"))
        .await
        .expect_err("malformed");
    assert_matches!(err, Error::InvalidInput { what: "email", .. });
}

/// A second user with the same email in another case is refused and nothing is written.
pub async fn duplicate_email_in_other_case_is_refused(f: &Fixture) {
    let store = &f.auth;
    let first = store
        .create_user(NewUser::new("straße@example.com", "h"))
        .await
        .expect("create");
    let err = store
        .create_user(NewUser::new("STRASSE@example.com", "h"))
        .await
        .map(|_| ());
    // ß and SS are different under lower-casing (not full case folding): this one is allowed.
    assert!(err.is_ok(), "{err:?}");
    let err = store
        .create_user(NewUser::new("STRAßE@EXAMPLE.COM", "other"))
        .await
        .expect_err("duplicate");
    assert_matches!(err, Error::AlreadyExists { what: "email" });
    let found = store
        .get_user_by_email("straße@example.com")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(found.id, first.id);
    assert_eq!(
        found.hashed_password, "h",
        "the refused create wrote nothing"
    );
    assert_eq!(count_users(f).await, 2);
}

/// 32 concurrent creates of one email in different letter case: exactly one user, 31
/// `AlreadyExists`.
pub async fn concurrent_creates_of_one_email_give_one_user(f: &Fixture) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = f.auth.clone();
            let email = mixed_case("racer@example.com", i);
            tokio::spawn(async move {
                store
                    .create_user(NewUser::new(email, format!("h{i}")))
                    .await
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(user) => created.push(user),
            Err(Error::AlreadyExists { what: "email" }) => refused += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((created.len(), refused), (1, 31));
    let found = f
        .auth
        .get_user_by_email("RACER@example.com")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(found.id, created[0].id);
    assert_eq!(count_users(f).await, 1);
}

/// A patch changes only what it names, bumps the version and `updated_at`.
pub async fn update_patches_and_bumps_version(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("p@example.com", "old"))
        .await
        .expect("create");
    let patch = UserPatch::new()
        .hashed_password("new")
        .verified(true)
        .extra(&profile())
        .expect("extra");
    let updated = store.update_user(user.id, patch).await.expect("update");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.hashed_password, "new");
    assert!(updated.is_verified && updated.is_active && !updated.is_superuser);
    assert_eq!(updated.email, user.email);
    assert_eq!(updated.created_at, user.created_at);
    assert!(updated.updated_at >= user.updated_at);
    assert_eq!(updated.extra_as::<Profile>().expect("typed"), profile());
    let read = store.get_user(user.id).await.expect("get").expect("exists");
    assert_eq!(read, updated, "the update is what was stored");

    let err = store
        .update_user(user.id, UserPatch::new().hashed_password("x".repeat(9000)))
        .await
        .expect_err("too large");
    assert_matches!(err, Error::ValueTooLarge { .. });
    let err = store
        .update_user(user.id, UserPatch::new().email("broken"))
        .await
        .expect_err("bad email");
    assert_matches!(err, Error::InvalidInput { what: "email", .. });
    let read = store.get_user(user.id).await.expect("get").expect("exists");
    assert_eq!(read.version, 2, "refused patches write nothing");
}

/// Changing an email keeps uniqueness: a taken email (any case) is refused, the old email is
/// freed, and of two users racing to one new email exactly one gets it.
pub async fn email_change_keeps_uniqueness(f: &Fixture) {
    let store = &f.auth;
    let a = store
        .create_user(NewUser::new("a@example.com", "h"))
        .await
        .expect("a");
    let b = store
        .create_user(NewUser::new("b@example.com", "h"))
        .await
        .expect("b");
    let err = store
        .update_user(b.id, UserPatch::new().email("A@EXAMPLE.COM"))
        .await
        .expect_err("taken");
    assert_matches!(err, Error::AlreadyExists { what: "email" });
    let found = store
        .get_user_by_email("b@example.com")
        .await
        .expect("get")
        .expect("b kept");
    assert_eq!((found.id, found.version), (b.id, 1));

    // Changing only the case of one's own email is allowed.
    let b2 = store
        .update_user(b.id, UserPatch::new().email("B@Example.com"))
        .await
        .expect("case");
    assert_eq!(b2.email, "B@Example.com");

    store
        .update_user(a.id, UserPatch::new().email("c@example.com"))
        .await
        .expect("move a");
    assert!(
        store
            .get_user_by_email("a@example.com")
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        store
            .get_user_by_email("C@example.com")
            .await
            .expect("get")
            .map(|u| u.id),
        Some(a.id)
    );
    store
        .create_user(NewUser::new("a@example.com", "h"))
        .await
        .expect("the old email is free again");

    let racers: Vec<_> = [a.id, b.id]
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let store = f.auth.clone();
            let email = mixed_case("target@example.com", i);
            tokio::spawn(async move { store.update_user(id, UserPatch::new().email(email)).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.expect("task") {
            Ok(_) => won += 1,
            Err(Error::AlreadyExists { what: "email" }) => {}
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one user gets the email");
}

/// Pairs of users swapping emails at the same moment (`update(x, email of y)` beside
/// `update(y, email of x)`): each target is taken when asked for, so every answer is
/// `AlreadyExists`, never a deadlock or another error, and every email stays with its user.
pub async fn concurrent_email_swaps_are_refused_cleanly(f: &Fixture) {
    const PAIRS: usize = 8;
    const ROUNDS: usize = 40;
    let mut pairs = Vec::with_capacity(PAIRS);
    for p in 0..PAIRS {
        let x = f
            .auth
            .create_user(NewUser::new(format!("swap-x{p}@example.com"), "h"));
        let y = f
            .auth
            .create_user(NewUser::new(format!("swap-y{p}@example.com"), "h"));
        pairs.push((x.await.expect("x"), y.await.expect("y")));
    }
    for _ in 0..ROUNDS {
        let mut racers = Vec::with_capacity(PAIRS * 2);
        for (x, y) in &pairs {
            // Both halves of a swap leave together, so their writes overlap.
            let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
            for (me, other) in [(x, y), (y, x)] {
                let (store, start) = (f.auth.clone(), start.clone());
                let (id, email) = (me.id, other.email.clone());
                racers.push(tokio::spawn(async move {
                    start.wait().await;
                    store.update_user(id, UserPatch::new().email(email)).await
                }));
            }
        }
        for racer in racers {
            match racer.await.expect("task") {
                Err(Error::AlreadyExists { what: "email" }) => {}
                other => panic!("a swap must be refused as AlreadyExists, got {other:?}"),
            }
        }
    }
    for (x, y) in &pairs {
        for user in [x, y] {
            let found = f.auth.get_user_by_email(&user.email).await.expect("get");
            assert_eq!(found.map(|u| (u.id, u.version)), Some((user.id, 1)));
        }
    }
}

/// An update conditional on a version that is no longer stored fails with `Conflict` and
/// writes nothing; of 16 concurrent updates conditional on one version exactly one wins.
pub async fn stale_version_is_a_conflict(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("v@example.com", "h"))
        .await
        .expect("create");
    let v2 = store
        .update_user(user.id, UserPatch::new().verified(true).if_version(1))
        .await
        .expect("current version");
    assert_eq!(v2.version, 2);
    let err = store
        .update_user(
            user.id,
            UserPatch::new().hashed_password("stale").if_version(1),
        )
        .await
        .expect_err("stale");
    assert_matches!(
        err,
        Error::Conflict {
            expected: 1,
            actual: 2,
            ..
        }
    );
    let read = store.get_user(user.id).await.expect("get").expect("exists");
    assert_eq!((read.version, read.hashed_password.as_str()), (2, "h"));

    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = f.auth.clone();
            let patch = UserPatch::new()
                .hashed_password(format!("h{i}"))
                .if_version(2);
            tokio::spawn(async move { store.update_user(user.id, patch).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(user) => winners.push(user),
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one conditional update wins");
    let read = store.get_user(user.id).await.expect("get").expect("exists");
    assert_eq!(read, winners[0]);
    assert_eq!(read.version, 3);
}

/// 16 concurrent unconditional updates are all applied: the version grows by 16.
pub async fn concurrent_updates_lose_nothing(f: &Fixture) {
    let user = f
        .auth
        .create_user(NewUser::new("busy@example.com", "h"))
        .await
        .expect("create");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = f.auth.clone();
            tokio::spawn(async move {
                store
                    .update_user(user.id, UserPatch::new().hashed_password(format!("h{i}")))
                    .await
            })
        })
        .collect();
    let mut versions = HashSet::new();
    for task in tasks {
        versions.insert(task.await.expect("task").expect("update").version);
    }
    assert_eq!(
        versions,
        (2..=17).collect(),
        "each update got its own version"
    );
    let read = f
        .auth
        .get_user(user.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read.version, 17);
}

/// Deleting a user removes its OAuth accounts and tokens and frees its email.
pub async fn delete_user_removes_accounts_and_tokens(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("gone@example.com", "h"))
        .await
        .expect("create");
    let other = store
        .create_user(NewUser::new("stays@example.com", "h"))
        .await
        .expect("create");
    store
        .add_oauth_account(
            user.id,
            NewOAuthAccount::new("github", "42", "gone@gh", "t"),
        )
        .await
        .expect("link");
    store
        .add_oauth_account(
            other.id,
            NewOAuthAccount::new("github", "43", "stays@gh", "t"),
        )
        .await
        .expect("link");
    let token = store.create_access_token(user.id).await.expect("token");
    let kept = store.create_access_token(other.id).await.expect("token");

    store.delete_user(user.id).await.expect("delete");
    assert!(store.get_user(user.id).await.expect("get").is_none());
    assert!(
        store
            .get_user_by_email("gone@example.com")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_user_by_oauth_account("github", "42")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .oauth_accounts(user.id)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .get_access_token(&token.token, None)
            .await
            .expect("get")
            .is_none()
    );
    let err = store.delete_user(user.id).await.expect_err("already gone");
    assert_matches!(err, Error::NotFound { what: "user" });

    assert!(
        store
            .get_user_by_oauth_account("github", "43")
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        store
            .get_access_token(&kept.token, None)
            .await
            .expect("get")
            .is_some()
    );
    store
        .add_oauth_account(other.id, NewOAuthAccount::new("github", "42", "x", "t"))
        .await
        .expect("the deleted user's link is free again");
    store
        .create_user(NewUser::new("GONE@example.com", "h"))
        .await
        .expect("email is free");
}

/// Following cursors visits every user exactly once; bad page requests are refused.
pub async fn list_users_pages_through_everyone(f: &Fixture) {
    let store = &f.auth;
    let mut expected = HashSet::new();
    for i in 0..23 {
        let user = store
            .create_user(NewUser::new(format!("user{i}@example.com"), "h"))
            .await
            .expect("create");
        expected.insert(user.id);
    }
    let mut seen = Vec::new();
    let mut request = PageRequest::first(5);
    let mut pages = 0;
    loop {
        let page = store.list_users(request.clone()).await.expect("page");
        assert!(page.items.len() <= 5);
        pages += 1;
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => request = PageRequest::after(5, next),
            None => break,
        }
        assert!(pages < 50, "pagination does not end");
    }
    assert_eq!(seen.len(), 23, "no user twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
    assert!(pages >= 5);

    let err = store
        .list_users(PageRequest::first(0))
        .await
        .expect_err("zero limit");
    assert_matches!(err, Error::InvalidInput { .. });
    let err = store
        .list_users(PageRequest::after(5, "not a cursor"))
        .await
        .expect_err("bad cursor");
    assert_matches!(err, Error::InvalidInput { .. });
}

/// Unknown ids read as `None` and fail updates with `NotFound`; ids of the wrong kind are
/// refused with `InvalidInput`.
pub async fn missing_and_foreign_ids(f: &Fixture) {
    let store = &f.auth;
    let kind = store.id_kind();
    let absent = absent_id(kind);
    assert!(store.get_user(absent).await.expect("get").is_none());
    let err = store
        .update_user(absent, UserPatch::new().verified(true))
        .await
        .expect_err("absent");
    assert_matches!(err, Error::NotFound { what: "user" });
    let err = store.delete_user(absent).await.expect_err("absent");
    assert_matches!(err, Error::NotFound { what: "user" });
    let err = store.create_access_token(absent).await.expect_err("absent");
    assert_matches!(err, Error::NotFound { what: "user" });
    let err = store
        .add_oauth_account(absent, NewOAuthAccount::new("gh", "1", "e", "t"))
        .await
        .expect_err("absent");
    assert_matches!(err, Error::NotFound { what: "user" });
    let err = store.get_user(foreign_id(kind)).await.expect_err("foreign");
    assert_matches!(
        err,
        Error::InvalidInput {
            what: "user id",
            ..
        }
    );
    assert_eq!(count_users(f).await, 0, "nothing was created");
}

/// Link, list, find, update and remove OAuth accounts.
pub async fn oauth_accounts_round_trip(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("o@example.com", "h"))
        .await
        .expect("create");
    let expires = now() + chrono::TimeDelta::hours(1);
    let google = store
        .add_oauth_account(
            user.id,
            NewOAuthAccount::new("google", "g-1", "o@gmail.com", "at-1")
                .expires_at(expires)
                .refresh_token("rt-1"),
        )
        .await
        .expect("link google");
    let github = store
        .add_oauth_account(
            user.id,
            NewOAuthAccount::new("github", "77", "o@gh", "at-2"),
        )
        .await
        .expect("link github");
    assert_eq!(google.user_id, user.id);
    assert_eq!(google.expires_at, Some(expires));

    let accounts = store.oauth_accounts(user.id).await.expect("list");
    assert_eq!(
        accounts,
        vec![github.clone(), google.clone()],
        "ordered by provider"
    );
    let found = store
        .get_user_by_oauth_account("google", "g-1")
        .await
        .expect("get");
    assert_eq!(found.map(|u| u.id), Some(user.id));
    assert!(
        store
            .get_user_by_oauth_account("google", "G-1")
            .await
            .expect("get")
            .is_none()
    );

    let patch = OAuthAccountPatch::new()
        .access_token("at-3", None)
        .refresh_token(None);
    let updated = store
        .update_oauth_account(user.id, "google", "g-1", patch)
        .await
        .expect("update");
    assert_eq!(updated.access_token, "at-3");
    assert_eq!(
        (updated.expires_at, updated.refresh_token.as_deref()),
        (None, None)
    );
    assert_eq!(updated.created_at, google.created_at);
    let accounts = store.oauth_accounts(user.id).await.expect("list");
    assert_eq!(accounts[1], updated);

    store
        .remove_oauth_account(user.id, "github", "77")
        .await
        .expect("remove");
    let err = store
        .remove_oauth_account(user.id, "github", "77")
        .await
        .expect_err("gone");
    assert_matches!(err, Error::NotFound { .. });
    let err = store
        .update_oauth_account(user.id, "github", "77", OAuthAccountPatch::new())
        .await
        .expect_err("gone");
    assert_matches!(err, Error::NotFound { .. });
    assert_eq!(
        store.oauth_accounts(user.id).await.expect("list"),
        vec![updated]
    );
    let err = store
        .add_oauth_account(user.id, NewOAuthAccount::new("", "1", "e", "t"))
        .await
        .expect_err("empty provider");
    assert_matches!(err, Error::InvalidInput { .. });

    // Provider names and account ids share one limit, in bytes, on every backend.
    let longest = "é".repeat(LIMITS.max_oauth_id_bytes / 2);
    let linked = store
        .add_oauth_account(
            user.id,
            NewOAuthAccount::new(&*longest, &*longest, "e", "t"),
        )
        .await
        .expect("the longest provider and account id");
    assert_eq!(linked.account_id, longest);
    let found = store
        .get_user_by_oauth_account(&longest, &longest)
        .await
        .expect("get");
    assert_eq!(found.map(|u| u.id), Some(user.id));
    let too_long = format!("{longest}x");
    let err = store
        .add_oauth_account(user.id, NewOAuthAccount::new("gh", &*too_long, "e", "t"))
        .await
        .expect_err("account id too long");
    assert_matches!(err, Error::ValueTooLarge { .. });
}

/// A (provider, account id) pair links to one user only, even when 16 tasks for two users race.
pub async fn oauth_account_is_unique_across_users_under_race(f: &Fixture) {
    let store = &f.auth;
    let a = store
        .create_user(NewUser::new("oa@example.com", "h"))
        .await
        .expect("a");
    let b = store
        .create_user(NewUser::new("ob@example.com", "h"))
        .await
        .expect("b");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = f.auth.clone();
            let user = if i % 2 == 0 { a.id } else { b.id };
            tokio::spawn(async move {
                store
                    .add_oauth_account(
                        user,
                        NewOAuthAccount::new("github", "1", "x", format!("t{i}")),
                    )
                    .await
            })
        })
        .collect();
    let mut owners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(account) => owners.push(account.user_id),
            Err(Error::AlreadyExists {
                what: "oauth account",
            }) => {}
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(owners.len(), 1, "exactly one link is made");
    let owner = store
        .get_user_by_oauth_account("github", "1")
        .await
        .expect("get")
        .expect("linked");
    assert_eq!(owner.id, owners[0]);
    let total = store.oauth_accounts(a.id).await.expect("a").len()
        + store.oauth_accounts(b.id).await.expect("b").len();
    assert_eq!(total, 1);
}

/// Tokens: issue, read with and without max age, delete one, delete all of a user.
pub async fn access_tokens(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("t@example.com", "h"))
        .await
        .expect("create");
    let other = store
        .create_user(NewUser::new("t2@example.com", "h"))
        .await
        .expect("create");
    let first = store.create_access_token(user.id).await.expect("issue");
    let second = store.create_access_token(user.id).await.expect("issue");
    let others = store.create_access_token(other.id).await.expect("issue");
    assert_ne!(first.token, second.token);

    let info = store
        .get_access_token(&first.token, None)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(info, first.info);
    assert_eq!(info.user_id, user.id);
    assert!(
        store
            .get_access_token("unknown", None)
            .await
            .expect("get")
            .is_none()
    );

    tokio::time::sleep(Duration::from_millis(120)).await;
    let hour = Some(Duration::from_secs(3600));
    assert!(
        store
            .get_access_token(&first.token, hour)
            .await
            .expect("get")
            .is_some()
    );
    let short = Some(Duration::from_millis(50));
    assert!(
        store
            .get_access_token(&first.token, short)
            .await
            .expect("get")
            .is_none(),
        "a token older than max_age is not returned"
    );

    assert!(
        store
            .delete_access_token(&first.token)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_access_token(&first.token)
            .await
            .expect("delete twice")
    );
    assert!(
        store
            .get_access_token(&first.token, None)
            .await
            .expect("get")
            .is_none()
    );

    store
        .delete_access_tokens_for_user(user.id)
        .await
        .expect("delete all");
    assert!(
        store
            .get_access_token(&second.token, None)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_access_token(&others.token, None)
            .await
            .expect("get")
            .is_some()
    );
}

/// Only a hash of each token is stored: the raw token appears nowhere in storage.
pub async fn access_tokens_are_stored_hashed(f: &Fixture) {
    let store = &f.auth;
    let user = store
        .create_user(NewUser::new("h@example.com", "h"))
        .await
        .expect("create");
    let issued = store.create_access_token(user.id).await.expect("issue");
    let dump = f.dump().await;
    let hash = storekit_core::token::hash(&issued.token);
    assert!(dump.contains(&hash), "the dump covers the token table");
    assert!(!dump.contains(&issued.token), "the raw token is stored");
}

async fn count_users(f: &Fixture) -> usize {
    let mut count = 0;
    let mut request = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let page = f.auth.list_users(request).await.expect("list");
        count += page.items.len();
        match page.next {
            Some(next) => request = PageRequest::after(PageRequest::MAX_LIMIT, next),
            None => return count,
        }
    }
}

/// `text` with letters upper-cased according to the bits of `seed`, so each racer differs.
fn mixed_case(text: &str, seed: usize) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if (seed >> (i % 6)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}
