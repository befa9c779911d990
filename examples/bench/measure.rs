//! Running one operation many times, from one task or many, and what came out of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use storekit::BoxError;

/// One task, or several tasks sharing the work on the multi-thread runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Seq,
    Concurrent(usize),
}

impl Mode {
    pub(crate) fn tasks(self) -> usize {
        match self {
            Self::Seq => 1,
            Self::Concurrent(tasks) => tasks,
        }
    }

    /// `seq` or `conc32`: also a prefix that keeps each mode's keys and emails apart.
    pub(crate) fn label(self) -> String {
        match self {
            Self::Seq => "seq".to_owned(),
            Self::Concurrent(tasks) => format!("conc{tasks}"),
        }
    }
}

/// How long one measurement may run: whichever of the two limits comes first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_ops: usize,
    pub(crate) window: Duration,
}

/// Who is measured, how, and where their DynamoDB requests are counted.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    pub(crate) peer: &'static str,
    pub(crate) mode: Mode,
    pub(crate) limits: Limits,
    pub(crate) requests: Option<Arc<AtomicU64>>,
}

/// What one measurement names: its workload, its operation, and the items each call handles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) workload: &'static str,
    pub(crate) name: &'static str,
    pub(crate) batch: usize,
}

/// The outcome of one measured operation.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) backend: &'static str,
    pub(crate) peer: &'static str,
    pub(crate) op: Op,
    pub(crate) mode: Mode,
    /// Calls made, failed ones included: the calls `0..calls` all ran.
    pub(crate) calls: usize,
    /// Items handled by the calls that succeeded (one per call, or a batch's size).
    pub(crate) items: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    /// Latencies of the successful calls, sorted.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) requests: Option<u64>,
}

impl Sample {
    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0.5 for the median), in microseconds.
    pub(crate) fn percentile_us(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[rank].as_secs_f64() * 1e6
    }

    /// DynamoDB requests (attempts, retries included) per call, where they are counted.
    pub(crate) fn requests_per_op(&self) -> Option<f64> {
        let calls = self.calls.max(1) as f64;
        self.requests.map(|requests| requests as f64 / calls)
    }
}

impl Runner {
    /// Calls `f(ctx, i)` for `i` in `0..count`, from `mode.tasks()` tasks, until `count` calls
    /// have been made or the time window is over. `f` returns the number of items it handled;
    /// an error is counted (the first one is printed) and the run goes on.
    pub(crate) async fn run<C, F, Fut>(&self, op: Op, ctx: &Arc<C>, count: usize, f: F) -> Sample
    where
        C: Send + Sync + 'static,
        F: Fn(Arc<C>, usize) -> Fut + Copy + Send + 'static,
        Fut: Future<Output = Result<u64, BoxError>> + Send,
    {
        let count = count.min(self.limits.max_ops);
        let next = Arc::new(AtomicUsize::new(0));
        let requests_before = self.requests_so_far();
        let start = Instant::now();
        let deadline = start + self.limits.window;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.mode.tasks() {
            let (ctx, next) = (ctx.clone(), next.clone());
            tasks.spawn(async move {
                let mut tally = Tally::default();
                // The clock is read before an index is taken, so every index taken is run and
                // the calls made are exactly `0..calls`, which later phases rely on. Each task
                // makes one call even if it starts after the window (a loaded machine may
                // run it late), so that no row is empty and later phases have keys to read.
                let mut first = true;
                while std::mem::take(&mut first) || Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let began = Instant::now();
                    let outcome = f(ctx.clone(), i).await;
                    tally.record(outcome, began.elapsed());
                }
                tally
            });
        }
        let mut total = Tally::default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(tally) => total.merge(tally),
                Err(panicked) => total.record(Err(panicked.into()), Duration::ZERO),
            }
        }
        let elapsed = start.elapsed();
        if let Some(error) = &total.first_error {
            eprintln!(
                "bench: {} {} {} {}: {} errors, first: {error}",
                self.peer,
                op.workload,
                op.name,
                self.mode.label(),
                total.errors
            );
        }
        total.latencies.sort_unstable();
        Sample {
            backend: "",
            peer: self.peer,
            op,
            mode: self.mode,
            calls: next.load(Ordering::Relaxed).min(count),
            items: total.items,
            errors: total.errors,
            elapsed,
            latencies: total.latencies,
            requests: requests_before.map(|before| self.requests_so_far().unwrap_or(0) - before),
        }
    }

    fn requests_so_far(&self) -> Option<u64> {
        self.requests
            .as_ref()
            .map(|counter| counter.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct Tally {
    items: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, outcome: Result<u64, BoxError>, latency: Duration) {
        match outcome {
            Ok(items) => {
                self.items += items;
                self.latencies.push(latency);
            }
            Err(error) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| with_sources(&*error));
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.items += other.items;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Of several rounds of the same measurements, each measurement from its median round by rate,
/// so that a burst of load elsewhere on the machine moves no row. Every round makes the same
/// measurements in the same order, so they are matched by position.
pub(crate) fn median_of(rounds: Vec<Vec<Sample>>) -> Vec<Sample> {
    let mut rounds = rounds.into_iter();
    let Some(first) = rounds.next() else {
        return Vec::new();
    };
    let mut rows: Vec<Vec<Sample>> = first.into_iter().map(|sample| vec![sample]).collect();
    for round in rounds {
        for (row, sample) in rows.iter_mut().zip(round) {
            row.push(sample);
        }
    }
    rows.into_iter()
        .map(|mut row| {
            row.sort_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
            row.swap_remove(row.len() / 2)
        })
        .collect()
}

/// An error and its sources on one line: storekit's errors name the operation, their sources
/// say what the database answered.
pub(crate) fn with_sources(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Turns an unexpected answer (a miss where a hit was due) into a counted error, so that a
/// backend cannot look fast by doing the wrong thing.
pub(crate) fn expect(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok { Ok(()) } else { Err(what.into()) }
}

/// A stand-in for random access without a dependency: SplitMix64 of `i`, below `bound`.
pub(crate) fn scatter(i: usize, bound: usize) -> usize {
    let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % bound.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(items: u64) -> Sample {
        Sample {
            backend: "memory",
            peer: "storekit",
            op: Op {
                workload: "kv",
                name: "get",
                batch: 1,
            },
            mode: Mode::Seq,
            calls: usize::try_from(items).unwrap_or(usize::MAX),
            items,
            errors: 0,
            elapsed: Duration::from_secs(1),
            latencies: vec![Duration::from_micros(1); 3],
            requests: None,
        }
    }

    #[test]
    fn each_row_comes_from_its_median_round() {
        let rounds = vec![
            vec![sample(30), sample(1)],
            vec![sample(10), sample(3)],
            vec![sample(20), sample(2)],
        ];
        let rates: Vec<f64> = median_of(rounds).iter().map(Sample::ops_per_sec).collect();
        assert_eq!(rates, [20.0, 2.0]);
    }

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let mut timed = sample(3);
        timed.latencies = [1, 2, 100].map(Duration::from_micros).to_vec();
        assert_eq!(timed.percentile_us(0.5), 2.0);
        assert_eq!(timed.percentile_us(0.99), 100.0);
    }
}
