//! The bench process's peak memory (resident set size) while one backend runs, read from
//! `/proc/self/status` (`VmHWM`) after the peak was reset (`5` written to
//! `/proc/self/clear_refs`), so that each backend's figure is its own. The storekit store and
//! the raw baseline run in the same process, one after the other, so the figure is the larger
//! of the two. Linux only: elsewhere nothing is reported.

use serde_json::{Value, json};

/// Resets the process's peak RSS to its current RSS; false if the kernel does not allow it
/// (the figure read afterwards then covers the whole run so far).
pub(crate) fn reset() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak RSS in KiB since start or the last [`reset`].
pub(crate) fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The line printed under a backend's tables.
pub(crate) fn markdown(backend: &str, kib: u64, since_reset: bool) -> String {
    let since = if since_reset {
        "during its run"
    } else {
        "since the process started (the peak could not be reset)"
    };
    format!(
        "peak memory (RSS, VmHWM) of the bench process, {backend} {since}: {:.1} MiB",
        kib as f64 / 1024.0
    )
}

/// The JSON line for the same figure.
pub(crate) fn json_line(backend: &str, kib: u64, since_reset: bool) -> Value {
    json!({
        "kind": "peak_rss",
        "backend": backend,
        "peak_rss_kib": kib,
        "since_reset": since_reset,
    })
}
