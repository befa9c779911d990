//! The bench process's peak memory (resident set size) while one backend runs, read from
//! `/proc/self/status` (`VmHWM`) after the peak was reset (`5` written to
//! `/proc/self/clear_refs`), so that each backend's figure is its own. The storekit store and
//! the raw baseline run in the same process, one after the other, so the figure is the larger
//! of the two. Linux only: elsewhere nothing is reported.
//!
//! One step of a run can be measured on its own with [`growth`], which resets the peak too:
//! the peak before it is carried over, so [`peak_kib`] still covers the backend's whole run.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// The highest peak seen before the last reset by [`growth`], in KiB.
static CARRIED_KIB: AtomicU64 = AtomicU64::new(0);

/// Resets the process's peak RSS to its current RSS; false if the kernel does not allow it
/// (the figure read afterwards then covers the whole run so far).
pub(crate) fn reset() -> bool {
    CARRIED_KIB.store(0, Ordering::Relaxed);
    reset_hwm()
}

fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak RSS in KiB since start or the last [`reset`].
pub(crate) fn peak_kib() -> Option<u64> {
    let hwm = status_kib("VmHWM:")?;
    Some(hwm.max(CARRIED_KIB.load(Ordering::Relaxed)))
}

/// A figure of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `step` and says how far the process's peak RSS rose above its RSS at the start, in
/// KiB: the memory the step held at its fullest. `None` where the peak cannot be reset.
pub(crate) async fn growth<T>(step: impl Future<Output = T>) -> (T, Option<u64>) {
    if let Some(hwm) = status_kib("VmHWM:") {
        CARRIED_KIB.fetch_max(hwm, Ordering::Relaxed);
    }
    let before = reset_hwm().then(|| status_kib("VmRSS:")).flatten();
    let output = step.await;
    let risen = before
        .zip(status_kib("VmHWM:"))
        .map(|(before, peak)| peak.saturating_sub(before));
    (output, risen)
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
