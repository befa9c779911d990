//! What the DynamoDB Local tests share.

/// The endpoint, or `None` (skip) when it is not set; under `CI` a missing one fails.
pub(crate) fn endpoint() -> Option<String> {
    const VAR: &str = "STOREKIT_DYNAMODB_ENDPOINT";
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{VAR} is not set and CI is: run `eval \"$(scripts/services.sh up)\"` first")
        }
        _ => {
            #[allow(clippy::print_stderr)] // the test harness shows stderr; a skip must be seen
            {
                eprintln!("SKIPPED: {VAR} is not set; run `eval \"$(scripts/services.sh up)\"`");
            }
            None
        }
    }
}
