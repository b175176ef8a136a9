//! Runs a fixed number of operations at a fixed concurrency and times each one.

use std::collections::BTreeMap;
use std::future::Future;
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
