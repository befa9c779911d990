//! `storekit::connect` picks the backend from the URL and reports bad URLs clearly.

use storekit::{Error, IdKind, KvStoreExt as _, MemoryStore, NewUser};

#[tokio::test]
async fn memory_and_sqlite_urls_give_working_stores() -> storekit::Result<()> {
    for url in [
        "memory://",
        "memory://?id=int",
        "memory://?id=int&prefix=app_",
        "memory://?prefix=app_&id=int",
        "memory://?prefix=app_",
        "sqlite::memory:",
        "sqlite::memory:?id=int&prefix=app_",
    ] {
        let stores = storekit::connect(url).await?;
        stores.migrate().await?;
        let user = stores
            .auth()
            .create_user(NewUser::new("a@example.com", "h"))
            .await?;
        let expected = if url.contains("id=int") {
            IdKind::Int
        } else {
            IdKind::Uuid
        };
        assert_eq!(user.id.kind(), expected, "{url}");
        stores.kv().set_json("ns", "k", &42, None).await?;
        assert_eq!(
            stores.kv().get_json::<i32>("ns", "k").await?,
            Some(42),
            "{url}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn typed_stores_convert_into_stores() -> storekit::Result<()> {
    let stores: storekit::Stores = MemoryStore::with_id_kind(IdKind::Int).into();
    assert_eq!(stores.backend(), "memory");
    assert_eq!(stores.auth().id_kind(), IdKind::Int);
    Ok(())
}

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    for url in [
        "mysql://localhost/db",
        "nonsense",
        "memory://?colour=blue",
        "memory://?prefix=1bad",
        "sqlite::memory:?prefix=1bad",
        // No path: a temporary database whose writes would vanish on reconnect.
        "sqlite://",
        "sqlite:",
        "sqlite://?prefix=app_",
        "postgres://postgres@127.0.0.1:1/test?schema=pg_app",
    ] {
        let result = match storekit::connect(url).await {
            Ok(stores) => stores.migrate().await,
            Err(e) => Err(e),
        };
        assert!(
            matches!(result, Err(Error::InvalidInput { .. })),
            "{url}: {result:?}"
        );
    }
}

#[cfg(not(feature = "dynamodb"))]
#[tokio::test]
async fn a_backend_without_its_feature_names_the_feature() {
    let err = storekit::connect("dynamodb://?endpoint=http://127.0.0.1:1")
        .await
        .expect_err("off");
    assert!(err.to_string().contains("`dynamodb` feature"), "{err}");
}

#[tokio::test]
async fn keep_expired_in_a_url_reaches_the_store() -> storekit::Result<()> {
    for url in [
        "memory://?keep_expired=90",
        "sqlite::memory:?keep_expired=90",
    ] {
        let stores = storekit::connect(url).await?;
        assert_eq!(
            stores.kv().keep_expired(),
            std::time::Duration::from_secs(90),
            "{url}"
        );
    }
    for url in [
        "memory://?keep_expired=soon",
        "sqlite::memory:?keep_expired=-1",
    ] {
        let err = storekit::connect(url).await.expect_err(url);
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    what: "keep_expired",
                    ..
                }
            ),
            "{url}: {err:?}"
        );
    }
    #[cfg(feature = "postgres")]
    {
        let config = storekit::PostgresConfig::from_url("postgres://h/db?keep_expired=5")?;
        assert_eq!(config.keep_expired, std::time::Duration::from_secs(5));
    }
    #[cfg(feature = "dynamodb")]
    {
        let config = storekit::DynamoDbConfig::from_url("dynamodb://?keep_expired=7")?;
        assert_eq!(config.keep_expired(), std::time::Duration::from_secs(7));
    }
    Ok(())
}
