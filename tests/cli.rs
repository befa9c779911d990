//! The `storekit` command: help and completions, one-line errors, migrate, schema export and
//! check, stats, and a copy killed half-way and run again.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Sizes, assert_same, open, seed, snapshot};

fn storekit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storekit"))
        .args(args)
        .output()
        .expect("the storekit binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails unless the command failed with exit 2 and one clean line on stderr.
fn assert_one_line_error(output: &Output, about: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{about}: {text}");
    assert_eq!(text.lines().count(), 1, "{about}: one line, got {text:?}");
    assert!(text.starts_with("storekit: error: "), "{about}: {text:?}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!text.contains(noise), "{about}: {text:?}");
    }
}

#[test]
fn every_subcommand_has_help_and_completions_are_printed() {
    for args in [
        &["--help"][..],
        &["migrate", "--help"],
        &["schema", "--help"],
        &["schema", "check", "--help"],
        &["copy", "--help"],
        &["stats", "--help"],
        &["completions", "--help"],
    ] {
        let output = storekit(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).contains("Usage: storekit"), "{args:?}");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = storekit(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        assert!(
            stdout(&output).contains("migrate"),
            "{shell} completes subcommands"
        );
    }
    let output = storekit(&["copy", "--from", "sqlite://a.db"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing argument is a usage error"
    );
}

#[test]
fn bad_urls_and_unreachable_servers_are_one_line_errors() {
    let missing_dir = "sqlite:///nonexistent-dir/deeper/app.db";
    // A closed port, a server that is not there, a scheme storekit does not know.
    for url in [
        "mysql://localhost/app",
        "nonsense",
        "sqlite://",
        missing_dir,
        "postgres://postgres@127.0.0.1:1/test",
        "dynamodb://?endpoint=http://127.0.0.1:1&region=us-east-1",
        "memory://?bogus=1",
    ] {
        let output = storekit(&["stats", url]);
        assert_one_line_error(&output, url);
        if url.contains("127.0.0.1:1") {
            assert!(
                stderr(&output).contains("unavailable"),
                "{}",
                stderr(&output)
            );
        }
        assert_one_line_error(&storekit(&["migrate", url]), url);
    }
    let output = storekit(&["schema", "--backend", "sqlite", "--format", "terraform"]);
    assert_one_line_error(&output, "terraform for sqlite");
    let output = storekit(&["schema", "--backend", "sqlite", "--prefix", "bad prefix;"]);
    assert_one_line_error(&output, "a bad prefix");
}

#[test]
fn missing_aws_credentials_are_one_line_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_storekit"))
        .args(["stats", "dynamodb://?region=us-east-1"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("runs");
    assert_one_line_error(&output, "no credentials");
    assert!(
        stderr(&output).contains("credential"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn migrate_says_what_it_created_then_that_everything_was_there() {
    let url = common::sqlite_url("cli-migrate");
    let first = storekit(&["migrate", &url]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    assert!(
        text.lines().any(|line| line.starts_with("created")),
        "{text}"
    );
    let again = storekit(&["migrate", &url]);
    let text = stdout(&again);
    assert!(again.status.success());
    assert!(
        !text.lines().any(|line| line.starts_with("created")),
        "{text}"
    );
    assert!(text.contains(" 0 created"), "{text}");
}

#[test]
fn schema_prints_terraform_cloudformation_and_sql() {
    let terraform = storekit(&["schema", "--backend", "dynamodb", "--prefix", "app_"]);
    let text = stdout(&terraform);
    assert!(terraform.status.success(), "{}", stderr(&terraform));
    assert!(text.contains("aws_dynamodb_table"), "{text}");
    assert!(text.contains("app_"), "{text}");
    assert!(text.contains("PAY_PER_REQUEST"), "{text}");

    let template = storekit(&[
        "schema",
        "--backend",
        "dynamodb",
        "--format",
        "cloudformation",
    ]);
    let json: serde_json::Value =
        serde_json::from_slice(&template.stdout).expect("CloudFormation is JSON");
    let resources = json["Resources"].as_object().expect("resources");
    assert!(
        resources
            .values()
            .all(|r| r["Type"] == "AWS::DynamoDB::Table"),
        "{json}"
    );
    assert!(resources.len() >= 3, "users, kv and markers: {json}");

    for backend in ["sqlite", "postgres"] {
        let sql = storekit(&["schema", "--backend", backend, "--id", "int"]);
        let text = stdout(&sql);
        assert!(sql.status.success(), "{backend}: {}", stderr(&sql));
        assert!(text.contains("CREATE TABLE"), "{backend}: {text}");
    }
}

#[test]
fn schema_check_passes_on_a_migrated_database_and_lists_drift() {
    let url = common::sqlite_url("cli-check");
    let never = storekit(&["schema", "check", &url]);
    assert_eq!(
        never.status.code(),
        Some(1),
        "a database never migrated differs"
    );
    assert!(storekit(&["migrate", &url]).status.success());
    let clean = storekit(&["schema", "check", &url]);
    assert!(clean.status.success(), "{}", stdout(&clean));

    // Drift behind storekit's back: an index dropped.
    let path = url.trim_start_matches("sqlite://");
    let conn = rusqlite::Connection::open(path).expect("open");
    let index: String = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL LIMIT 1",
            [],
            |row| row.get(0),
        )
        .expect("an index storekit made");
    conn.execute(&format!("DROP INDEX \"{index}\""), [])
        .expect("drop");
    drop(conn);
    let drifted = storekit(&["schema", "check", &url]);
    assert_eq!(drifted.status.code(), Some(1));
    assert!(stdout(&drifted).contains(&index), "{}", stdout(&drifted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_every_kind() {
    let url = common::sqlite_url("cli-stats");
    let stores = open(&url).await;
    seed(
        &stores,
        Sizes {
            users: 12,
            kv: 30,
            records: 25,
        },
    )
    .await;
    let output = storekit(&["stats", &url]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    for line in [
        "users           12",
        "oauth accounts  18",
        "access tokens   18",
        "kv items        30 in 3 namespaces",
        "records         25 in 1 tables",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let only = storekit(&["stats", &url, "--only", "kv", "--namespace", "flags"]);
    assert!(stdout(&only).contains("kv items        10 in 1 namespaces"));
    // What counting each table will read, said first, on stderr, leaving stdout the answer.
    let said = stderr(&output);
    assert!(
        said.lines()
            .any(|line| line.starts_with("reading catalogue: ") && line.contains("statement")),
        "{said}"
    );
    assert!(!text.contains("reading "), "{text}");
    assert!(
        !stderr(&only).contains("reading "),
        "kv only reads no table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_from_a_live_store_exports_its_catalog_without_code() {
    let url = common::sqlite_url("cli-schema-from");
    let stores = open(&url).await;
    seed(
        &stores,
        Sizes {
            users: 1,
            kv: 1,
            records: 3,
        },
    )
    .await;
    let output = storekit(&["schema", "--from", &url]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(text.contains("CREATE TABLE"), "{text}");
    assert!(text.contains("catalogue"), "the seeded table: {text}");
    // The SQL re-creates what the live store holds: run into an empty database, it checks
    // clean.
    let fresh = common::sqlite_url("cli-schema-from-applied");
    let path = fresh.trim_start_matches("sqlite://");
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(&text).expect("the exported SQL runs");
    drop(conn);
    let check = storekit(&["schema", "check", &fresh]);
    assert!(check.status.success(), "{}", stdout(&check));
    // A format the backend has no use for, and a memory store, are one-line errors.
    let wrong = storekit(&["schema", "--from", &url, "--format", "terraform"]);
    assert_one_line_error(&wrong, "terraform for sqlite");
    let memory = storekit(&["schema", "--from", "memory://"]);
    assert_one_line_error(&memory, "memory");
    let both = storekit(&["schema", "--from", &url, "--backend", "postgres"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "--from names the backend itself"
    );
}

/// Runs `storekit copy` to a destination, kills it (SIGKILL) once some users have arrived,
/// then runs it again to the end.
async fn killed_and_rerun(source_url: &str, destination_url: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storekit"))
        .args([
            "copy",
            "--quiet",
            "--batch",
            "50",
            "--from",
            source_url,
            "--to",
            destination_url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no user arrived in 120 s");
        if let Ok(stores) = storekit::connect(destination_url).await
            && let Ok(page) = stores
                .auth()
                .list_users(storekit::PageRequest::first(1))
                .await
            && !page.items.is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the copy was still running when killed"
    );
    child.kill().expect("kill");
    child.wait().expect("reap");

    let source = open(source_url).await;
    let destination = open(destination_url).await;
    let partial = snapshot(&destination).await;
    let whole = snapshot(&source).await;
    assert!(partial.users.len() < whole.users.len(), "killed half-way");
    let rerun = storekit(&[
        "copy",
        "--quiet",
        "--from",
        source_url,
        "--to",
        destination_url,
    ]);
    assert!(
        rerun.status.success(),
        "{}{}",
        stdout(&rerun),
        stderr(&rerun)
    );
    assert!(stdout(&rerun).contains("kv items: "), "{}", stdout(&rerun));
    assert_same(&whole, &snapshot(&destination).await, "after the rerun");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_half_way_and_run_again_ends_equal() {
    let source_url = common::sqlite_url("cli-kill-source");
    let source = open(&source_url).await;
    seed(
        &source,
        Sizes {
            users: 300,
            kv: 2_000,
            records: 600,
        },
    )
    .await;
    killed_and_rerun(&source_url, &common::sqlite_url("cli-kill-destination")).await;
    if let Some(postgres) = common::postgres_url("clikill") {
        killed_and_rerun(&source_url, &postgres).await;
        open(&postgres).await.drop_tables().await.expect("drop");
    }
}
