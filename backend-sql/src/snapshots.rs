//! Every statement the users, OAuth, tokens and kv stores run, rendered for {SQLite,
//! PostgreSQL} × {uuid, int} ids, must stay the texts committed in `tests/snapshots/`
//! (whitespace and placeholder spelling, `?N` or `$N`, aside; names are only labels), and the
//! SQL export must stay byte for byte the script committed there. Written before the
//! statements of both dialects were brought into one source (issue 22), so that the move is
//! seen to change no statement.
//!
//! After a deliberate change of a statement, `STOREKIT_UPDATE_SNAPSHOTS=1 cargo test -p
//! storekit-sql --all-features snapshots` writes the files anew, and the diff shows it.

use std::path::PathBuf;

use storekit_core::IdKind;
use storekit_core::admin::ExportOptions;
use storekit_core::table::{KeyDef, TableSchema};

pub(crate) const KINDS: [IdKind; 2] = [IdKind::Uuid, IdKind::Int];

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name)
}

fn updating() -> bool {
    std::env::var_os("STOREKIT_UPDATE_SNAPSHOTS").is_some()
}

/// `text` with each run of white space one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` on one line, with `?N` and `$N` both spelled `#N`.
fn normalize(text: &str) -> String {
    let text = one_line(text);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = matches!(c, '?' | '$') && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '#' } else { c });
    }
    out
}

/// The snapshot file's text: each statement on one line under its name, sorted by name.
fn file_text(statements: &[(&str, String)]) -> String {
    let mut named: Vec<_> = statements.iter().collect();
    named.sort_by_key(|(name, _)| *name);
    named
        .iter()
        .map(|(name, text)| format!("-- {name}\n{}\n\n", one_line(text)))
        .collect()
}

/// The statements of a snapshot file, normalized and sorted.
fn parse(file: &str) -> Vec<String> {
    let mut texts: Vec<String> = file
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("-- "))
        .map(normalize)
        .collect();
    texts.sort();
    texts
}

/// Compares `statements` with the snapshot `name`, naming every text that is new or gone.
pub(crate) fn check_statements(name: &str, statements: &[(&str, String)]) {
    let path = path(name);
    if updating() {
        std::fs::write(&path, file_text(statements)).expect("write snapshot");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with STOREKIT_UPDATE_SNAPSHOTS=1)",
            path.display()
        )
    });
    let want = parse(&stored);
    let mut have: Vec<String> = statements.iter().map(|(_, text)| normalize(text)).collect();
    have.sort();
    let gone: Vec<_> = want.iter().filter(|text| !have.contains(text)).collect();
    let new: Vec<_> = statements
        .iter()
        .filter(|(_, text)| !want.contains(&normalize(text)))
        .map(|(name, text)| format!("{name}: {}", one_line(text)))
        .collect();
    assert!(
        want == have,
        "{name}: statements changed\n  gone: {gone:#?}\n  new: {new:#?}"
    );
}

fn check_export(name: &str, script: &str) {
    let path = path(name);
    if updating() {
        std::fs::write(&path, script).expect("write snapshot");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with STOREKIT_UPDATE_SNAPSHOTS=1)",
            path.display()
        )
    });
    assert!(stored == script, "{name}: the export changed:\n{script}");
}

fn things() -> TableSchema {
    TableSchema::builder("things", KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .index("by-name", KeyDef::text("name"), None)
        .unique("pair", [KeyDef::text("a"), KeyDef::float("b")])
        .build()
        .expect("valid schema")
}

fn events() -> TableSchema {
    TableSchema::builder("events", KeyDef::bytes("stream"))
        .sort_key(KeyDef::int("at"))
        .build()
        .expect("valid schema")
}

fn options(kind: IdKind) -> ExportOptions {
    ExportOptions::default().prefix("app_").id_kind(kind)
}

#[cfg(feature = "sqlite")]
#[test]
fn the_sqlite_export_is_unchanged() {
    let (things, events) = (things(), events());
    for kind in KINDS {
        let script = crate::export::sqlite(&options(kind), &[&things, &events]).expect("export");
        check_export(&format!("export-sqlite-{}.sql", kind.as_str()), &script);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn the_postgres_export_is_unchanged() {
    let (things, events) = (things(), events());
    for kind in KINDS {
        let script = crate::export::postgres(&options(kind), &[&things, &events]).expect("export");
        check_export(&format!("export-postgres-{}.sql", kind.as_str()), &script);
    }
}

#[test]
fn placeholders_and_white_space_are_set_aside() {
    assert_eq!(
        normalize("SELECT  a\n FROM t WHERE b = ?1 AND c = $12 AND d = :ns"),
        "SELECT a FROM t WHERE b = #1 AND c = #12 AND d = :ns"
    );
    assert_ne!(normalize("x = ?1"), normalize("x = ?2"));
}
