//! Latency recording and the report every scenario produces (table and JSON).

use std::fmt::{Display, Write as _};
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The outcomes of one kind of operation: latencies of the successful ones, and the errors.
#[derive(Default)]
pub struct Latencies {
    micros: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Latencies {
    pub fn record_success(&mut self, elapsed: Duration) {
        self.micros
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    /// Awaits one request and records its latency or its error; returns its output on success.
    pub async fn time<T, E: Display>(
        &mut self,
        request: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let sent = Instant::now();
        match request.await {
            Ok(output) => {
                self.record_success(sent.elapsed());
                Some(output)
            }
            Err(error) => {
                self.record_error(error.to_string());
                None
            }
        }
    }

    /// "N of M failed, first: ..." when any request failed.
    pub fn failure_summary(&self) -> Option<String> {
        let first_error = self.first_error.as_ref()?;
        Some(format!(
            "{} of {} failed, first: {first_error}",
            self.errors,
            self.errors + self.micros.len() as u64
        ))
    }

    /// Adds another recorder's outcomes; its first error is kept only if this one has none.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        if let Some(error) = other.first_error {
            self.first_error.get_or_insert(error);
        }
    }

    /// Summarises against the wall time of the phase the operation ran in, so operations that
    /// ran interleaved in one phase report rates that add up to the phase's throughput.
    pub fn report(mut self, operation: &str, phase_wall: Duration) -> OperationReport {
        self.micros.sort_unstable();
        let successes = self.micros.len() as u64;
        let wall_secs = phase_wall.as_secs_f64();
        OperationReport {
            operation: operation.to_owned(),
            count: successes + self.errors,
            errors: self.errors,
            duration_s: wall_secs,
            req_per_s: if wall_secs > 0.0 {
                successes as f64 / wall_secs
            } else {
                0.0
            },
            p50_ms: percentile_ms(&self.micros, 0.50),
            p99_ms: percentile_ms(&self.micros, 0.99),
            max_ms: self.micros.last().map_or(0.0, |&m| m as f64 / 1000.0),
            first_error: self.first_error,
        }
    }
}

/// Nearest-rank percentile of sorted samples, in milliseconds (0 when there are none).
fn percentile_ms(sorted_micros: &[u64], quantile: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted_micros.len() as f64).ceil() as usize;
    sorted_micros[rank.clamp(1, sorted_micros.len()) - 1] as f64 / 1000.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationReport {
    pub operation: String,
    /// Requests attempted, errors included.
    pub count: u64,
    pub errors: u64,
    /// Wall time of the phase the operation ran in.
    pub duration_s: f64,
    /// Successful requests per second of phase wall time.
    pub req_per_s: f64,
    /// Latency percentiles over successful requests.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub base_url: String,
    /// The scenario's options, so a JSON file says what it measured.
    pub parameters: Value,
    pub operations: Vec<OperationReport>,
}

impl ScenarioReport {
    pub fn has_errors(&self) -> bool {
        self.operations.iter().any(|op| op.errors > 0)
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {} against {}  {}\n",
            self.scenario, self.base_url, self.parameters
        );
        let width = operation_column_width(&self.operations);
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9}",
            "operation", "count", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
        );
        for op in &self.operations {
            let _ = writeln!(
                out,
                "{:<width$} {:>8} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2}",
                op.operation, op.count, op.errors, op.req_per_s, op.p50_ms, op.p99_ms, op.max_ms
            );
        }
        for op in &self.operations {
            if let Some(error) = &op.first_error {
                let _ = writeln!(out, "{}: first error: {error}", op.operation);
            }
        }
        out
    }
}

/// Wide enough for the longest operation name, so the columns line up.
pub fn operation_column_width(operations: &[OperationReport]) -> usize {
    operations
        .iter()
        .map(|op| op.operation.len())
        .chain([12])
        .max()
        .unwrap_or(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record_success(Duration::from_millis(ms));
        }
        latencies.record_error("boom".into());
        let report = latencies.report("op", Duration::from_secs(10));
        assert_eq!(report.count, 101);
        assert_eq!(report.errors, 1);
        assert_eq!(report.req_per_s, 10.0);
        assert_eq!(report.p50_ms, 50.0);
        assert_eq!(report.p99_ms, 99.0);
        assert_eq!(report.max_ms, 100.0);
        assert_eq!(report.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn empty_operation_reports_zeroes() {
        let report = Latencies::default().report("op", Duration::ZERO);
        assert_eq!(
            (report.count, report.req_per_s, report.p99_ms),
            (0, 0.0, 0.0)
        );
    }
}
