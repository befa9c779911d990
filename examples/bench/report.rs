//! The Markdown table on stdout and the JSON lines of `--json`.

use std::fmt::Write as _;

use serde_json::{Value, json};

#[cfg(all(feature = "sqlite", feature = "postgres"))]
use crate::copy::CopyReport;
use crate::listing::Read;
use crate::measure::Sample;
use crate::scale::ScaleReport;

/// One row per storekit measurement, with the raw driver's measurement of the same operation
/// and mode beside it.
pub(crate) fn markdown(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| backend | workload | op | mode | storekit ops/s | raw ops/s | storekit/raw \
         | p50 µs | p99 µs | errors | requests/op |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for kit in samples.iter().filter(|s| s.peer == "storekit") {
        let raw = samples.iter().find(|s| {
            s.peer == "raw"
                && s.backend == kit.backend
                && s.op.workload == kit.op.workload
                && s.op.name == kit.op.name
                && s.mode == kit.mode
        });
        let both = |f: &dyn Fn(&Sample) -> String| match raw {
            Some(raw) => format!("{} / {}", f(kit), f(raw)),
            None => f(kit),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            kit.backend,
            kit.op.workload,
            op_name(kit),
            kit.mode.label(),
            kit.ops_per_sec(),
            raw.map_or("–".to_owned(), |raw| format!("{:.0}", raw.ops_per_sec())),
            raw.map_or("–".to_owned(), |raw| format!(
                "{:.2}",
                kit.ops_per_sec() / raw.ops_per_sec().max(1e-9)
            )),
            both(&|s| format!("{:.0}", s.percentile_us(0.5))),
            both(&|s| format!("{:.0}", s.percentile_us(0.99))),
            both(&|s| s.errors.to_string()),
            match kit.requests_per_op() {
                Some(_) => both(&|s| s
                    .requests_per_op()
                    .map_or("–".to_owned(), |r| format!("{r:.2}"))),
                None => "–".to_owned(),
            },
        );
    }
    out
}

/// Batch operations are named with their size, since their rate counts items, not calls.
fn op_name(sample: &Sample) -> String {
    match sample.op.name {
        "set_many" | "delete_many" => format!("{} ×{}", sample.op.name, sample.op.batch),
        _ if sample.op.workload == "copy" => format!("{} ×{}", sample.op.name, sample.op.batch),
        name => name.to_owned(),
    }
}

/// One JSON object per measurement.
pub(crate) fn json_line(sample: &Sample) -> Value {
    let mut line = json!({
        "kind": "bench",
        "peer": sample.peer,
        "backend": sample.backend,
        "workload": sample.op.workload,
        "op": sample.op.name,
        "mode": sample.mode.label(),
        "concurrency": sample.mode.tasks(),
        "n": sample.op.batch,
        "ops_per_sec": tenths(sample.ops_per_sec()),
        "p50_us": tenths(sample.percentile_us(0.5)),
        "p99_us": tenths(sample.percentile_us(0.99)),
        "errors": sample.errors,
    });
    if let (Some(requests), Value::Object(fields)) = (sample.requests_per_op(), &mut line) {
        fields.insert(
            "requests_per_op".to_owned(),
            json!(tenths(requests * 10.0) / 10.0),
        );
    }
    line
}

/// Rounded to a tenth: finer digits in a timing are noise.
fn tenths(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The table of a `--scale` run.
pub(crate) fn scale_markdown(report: &ScaleReport) -> String {
    let mut out = String::from(
        "| backend | op | mode | rows | ops/s | p50 µs | p99 µs | errors | rate / rate at the first size |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for point in &report.points {
        let base = report
            .points
            .iter()
            .find(|p| {
                p.sample.op.name == point.sample.op.name && p.sample.mode == point.sample.mode
            })
            .map_or(1.0, |p| p.sample.ops_per_sec());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2} |",
            point.sample.backend,
            point.sample.op.name,
            point.sample.mode.label(),
            point.rows,
            point.sample.ops_per_sec(),
            point.sample.percentile_us(0.5),
            point.sample.percentile_us(0.99),
            point.sample.errors,
            point.sample.ops_per_sec() / base.max(1e-9),
        );
    }
    let mib = |bytes: Option<u64>| {
        bytes.map_or("n/a".to_owned(), |b| {
            format!("{:.1} MiB", b as f64 / 1_048_576.0)
        })
    };
    let _ = writeln!(
        out,
        "\nfill: {} kv items and {} users in {:.1} s; database file {}, largest WAL seen {}, WAL at the end {}",
        report.rows,
        report.rows,
        report.fill_secs,
        mib(report.db_bytes),
        mib(report.wal_max_bytes),
        mib(report.wal_end_bytes),
    );
    out.push_str(&listings_markdown(report));
    out
}

/// The listings of a `--scale` run: one row each, storekit beside the raw driver.
fn listings_markdown(report: &ScaleReport) -> String {
    let mut out = String::from(
        "\n| backend | listing | rows | storekit s | raw s | storekit items/s | raw items/s \
         | storekit/raw | peak RSS growth MiB | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mib =
        |kib: Option<u64>| kib.map_or("n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    for listing in &report.listings {
        let kit = &listing.storekit;
        let raw = listing.raw.as_ref();
        let both = |f: &dyn Fn(&Read) -> String| match raw {
            Some(raw) => format!("{} / {}", f(kit), f(raw)),
            None => f(kit),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {} | {:.0} | {} | {} | {} | {} |",
            report.backend,
            listing.op,
            listing.rows,
            kit.secs,
            raw.map_or("–".to_owned(), |raw| format!("{:.3}", raw.secs)),
            kit.per_sec(),
            raw.map_or("–".to_owned(), |raw| format!("{:.0}", raw.per_sec())),
            listing
                .ratio()
                .map_or("–".to_owned(), |ratio| format!("{ratio:.2}")),
            both(&|read| mib(read.peak_growth_kib)),
            both(&|read| read.errors.to_string()),
        );
    }
    for listing in &report.listings {
        if let Some(secs) = listing.fill_secs {
            let _ = writeln!(
                out,
                "\n{}: {} records put into one partition in {secs:.2} s",
                listing.op, listing.rows
            );
        }
    }
    out
}

/// The JSON lines of a `--scale` run: one per measurement, one for the file sizes, and one
/// per peer and listing (storekit's with `storekit_over_raw`).
pub(crate) fn scale_json(report: &ScaleReport) -> Vec<Value> {
    let mut lines: Vec<Value> = report
        .points
        .iter()
        .map(|point| {
            json!({
                "kind": "scale",
                "peer": "storekit",
                "backend": point.sample.backend,
                "op": point.sample.op.name,
                "rows": point.rows,
                "mode": point.sample.mode.label(),
                "concurrency": point.sample.mode.tasks(),
                "ops_per_sec": tenths(point.sample.ops_per_sec()),
                "p50_us": tenths(point.sample.percentile_us(0.5)),
                "p99_us": tenths(point.sample.percentile_us(0.99)),
                "errors": point.sample.errors,
            })
        })
        .collect();
    lines.push(json!({
        "kind": "scale",
        "peer": "storekit",
        "backend": report.backend,
        "op": "fill",
        "rows": report.rows,
        "fill_secs": tenths(report.fill_secs),
        "db_bytes": report.db_bytes,
        "wal_max_bytes": report.wal_max_bytes,
        "wal_end_bytes": report.wal_end_bytes,
    }));
    for listing in &report.listings {
        let peers = std::iter::once(("storekit", &listing.storekit))
            .chain(listing.raw.as_ref().map(|raw| ("raw", raw)));
        for (peer, read) in peers {
            let mut line = json!({
                "kind": "scale",
                "peer": peer,
                "backend": report.backend,
                "op": listing.op,
                "rows": listing.rows,
                "secs": (read.secs * 1000.0).round() / 1000.0,
                "items_per_sec": tenths(read.per_sec()),
                "peak_growth_kib": read.peak_growth_kib,
                "errors": read.errors,
            });
            if let (Some(ratio), "storekit", Value::Object(fields)) =
                (listing.ratio(), peer, &mut line)
            {
                fields.insert(
                    "storekit_over_raw".to_owned(),
                    json!((ratio * 100.0).round() / 100.0),
                );
            }
            if let (Some(secs), Value::Object(fields)) = (listing.fill_secs, &mut line) {
                fields.insert("fill_secs".to_owned(), json!(tenths(secs)));
            }
            lines.push(line);
        }
    }
    lines
}

/// The row of a `--copy` run, and how fast each peer reads the source alone.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub(crate) fn copy_markdown(report: &CopyReport) -> String {
    let (kit, raw) = report.read_only;
    format!(
        "{}\nsource: {} kv items filled into SQLite in {:.1} s; reading them alone: storekit \
         export_kv {kit:.0} items/s, rusqlite {raw:.0} items/s\n",
        markdown(&report.samples),
        report.rows,
        report.fill_secs,
    )
}

/// The JSON lines of a `--copy` run: one per peer, then one for the source.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub(crate) fn copy_json(report: &CopyReport) -> Vec<Value> {
    let raw = report.samples.iter().find(|s| s.peer == "raw");
    let mut lines = Vec::new();
    for sample in &report.samples {
        let mut line = json_line(sample);
        // The figure, on storekit's line: its rate over the raw copy's.
        if let (Some(raw), "storekit", Value::Object(fields)) = (raw, sample.peer, &mut line) {
            let ratio = sample.ops_per_sec() / raw.ops_per_sec().max(1e-9);
            fields.insert(
                "storekit_over_raw".to_owned(),
                json!((ratio * 100.0).round() / 100.0),
            );
        }
        lines.push(line);
    }
    lines.push(json!({
        "kind": "copy_source",
        "backend": "sqlite",
        "rows": report.rows,
        "fill_secs": tenths(report.fill_secs),
        "storekit_export_items_per_sec": tenths(report.read_only.0),
        "raw_read_items_per_sec": tenths(report.read_only.1),
    }));
    lines
}
