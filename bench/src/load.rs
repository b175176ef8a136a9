//! Runs a fixed number of operations at a fixed concurrency and times each one.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, future, stream};

use crate::client::RequestError;
use crate::stats::{Latencies, OperationReport};

/// The outcome of one phase: per-operation latencies and the successful operations' outputs.
pub struct Phase<T> {
    pub wall: Duration,
    pub latencies: BTreeMap<&'static str, Latencies>,
    pub outputs: Vec<T>,
}

impl<T> Phase<T> {
    pub fn reports(self) -> Vec<OperationReport> {
        let wall = self.wall;
        self.latencies
            .into_iter()
            .map(|(operation, latencies)| latencies.report(operation, wall))
            .collect()
    }

    /// For setup phases, whose partial success would make the measurements after them lie:
    /// an error naming each failing operation unless all of them succeeded.
    pub fn check_complete(&self) -> Result<(), String> {
        let failures: Vec<String> = self
            .latencies
            .iter()
            .filter_map(|(operation, latencies)| {
                latencies
                    .failure_summary()
                    .map(|summary| format!("{operation}: {summary}"))
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

/// Runs `operation(0..count)` with at most `concurrency` in flight. Each operation names itself,
/// so one phase can interleave several kinds of request.
pub async fn run_phase<T, F, Fut>(concurrency: usize, count: usize, operation: F) -> Phase<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = (&'static str, Result<T, RequestError>)>,
{
    let started = Instant::now();
    let mut completions = stream::iter(0..count)
        .map(|i| {
            let pending = operation(i);
            async move {
                let sent = Instant::now();
                let (name, result) = pending.await;
                (name, sent.elapsed(), result)
            }
        })
        .buffer_unordered(concurrency);

    let mut latencies: BTreeMap<&'static str, Latencies> = BTreeMap::new();
    let mut outputs = Vec::with_capacity(count);
    while let Some((name, elapsed, result)) = completions.next().await {
        let entry = latencies.entry(name).or_default();
        match result {
            Ok(output) => {
                entry.record_success(elapsed);
                outputs.push(output);
            }
            Err(error) => entry.record_error(error.to_string()),
        }
    }
    Phase {
        wall: started.elapsed(),
        latencies,
        outputs,
    }
}

/// Runs `workers` loops side by side, each sending its share of `count` operations one after
/// another, as clients that wait for each answer before sending the next. Worker `w` runs
/// operations `w`, `w + workers`, `w + 2 * workers`, ... through `operation(w, i)`.
pub async fn run_workers<F, Fut>(
    name: &str,
    workers: usize,
    count: usize,
    operation: F,
) -> OperationReport
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = Result<(), RequestError>>,
{
    let started = Instant::now();
    let loops = (0..workers).map(|worker| {
        let operation = &operation;
        async move {
            let mut latencies = Latencies::default();
            for i in (worker..count).step_by(workers) {
                latencies.time(operation(worker, i)).await;
            }
            latencies
        }
    });
    let per_worker = future::join_all(loops).await;
    let wall = started.elapsed();
    let mut latencies = Latencies::default();
    for worker_latencies in per_worker {
        latencies.merge(worker_latencies);
    }
    latencies.report(name, wall)
}

/// How often a long setup step reports how far it got.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// An untimed setup step: `operation(0..count)` with at most `concurrency` in flight, failing
/// unless every operation succeeded (a measurement over a half-built setup would not mean what
/// its row says). Its outputs come in completion order.
pub async fn run_setup<T, F, Fut>(
    label: &str,
    concurrency: usize,
    count: usize,
    operation: F,
) -> Result<Vec<T>, String>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = (&'static str, Result<T, RequestError>)>,
{
    let progress = Progress::new(label, count);
    let phase = run_phase(concurrency, count, |i| {
        let (pending, progress) = (operation(i), &progress);
        async move {
            let outcome = pending.await;
            progress.tick();
            outcome
        }
    })
    .await;
    phase.check_complete()?;
    Ok(phase.outputs)
}

/// Counts the finished operations of a setup step and prints the count to stderr every
/// [`PROGRESS_INTERVAL`], so a slow server (Synapse registers one or two users a second) shows
/// it is moving, and a fast one prints nothing.
struct Progress<'a> {
    label: &'a str,
    total: usize,
    done: AtomicUsize,
    last_print: Mutex<Instant>,
}

impl<'a> Progress<'a> {
    fn new(label: &'a str, total: usize) -> Self {
        Self {
            label,
            total,
            done: AtomicUsize::new(0),
            last_print: Mutex::new(Instant::now()),
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last_print = self
            .last_print
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if done < self.total && last_print.elapsed() >= PROGRESS_INTERVAL {
            *last_print = Instant::now();
            eprintln!("{}: {done} of {}", self.label, self.total);
        }
    }
}
