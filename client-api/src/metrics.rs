//! Prometheus metrics at `/metrics`: request counts and latency per endpoint and status.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use tessera_core::Services;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counts per (method, path template, status); shared by every listener of the process.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    fn observe(&self, method: &str, path: &str, status: u16, seconds: f64) {
        // A poisoned lock only means a panic elsewhere mid-update; counters stay usable.
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let entry = series
            .entry((method.to_owned(), path.to_owned(), status))
            .or_default();
        entry.count += 1;
        entry.sum_seconds += seconds;
        for (bound, bucket) in BUCKETS.iter().zip(entry.buckets.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
    }

    fn render(&self, sync_waiting: usize) -> String {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!(
            "# HELP tessera_sync_waiting Syncs (long-polls and WebSockets) waiting for news.\n\
             # TYPE tessera_sync_waiting gauge\ntessera_sync_waiting {}\n",
            sync_waiting
        );
        out.push_str(
            "# HELP tessera_http_requests_total HTTP requests served.\n# TYPE tessera_http_requests_total counter\n",
        );
        for ((method, path, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "tessera_http_requests_total{{method=\"{method}\",path=\"{path}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP tessera_http_request_duration_seconds Time to answer HTTP requests.\n# TYPE tessera_http_request_duration_seconds histogram\n",
        );
        for ((method, path, status), s) in series.iter() {
            let labels = format!("method=\"{method}\",path=\"{path}\",status=\"{status}\"");
            for (bound, bucket) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "tessera_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {bucket}"
                );
            }
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

pub(crate) fn routes() -> Router<Arc<Services>> {
    Router::new().route("/metrics", get(render))
}

async fn render(
    State(services): State<Arc<Services>>,
    axum::Extension(metrics): axum::Extension<Arc<Metrics>>,
) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(services.notifier.waiting()),
    )
}

/// Middleware: times every request and records it under its path template (never the raw
/// path, whose IDs would make the series unbounded).
pub(crate) async fn record(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    // Methods are any token a client sends; only the standard ones get their own series.
    let method = match *request.method() {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        method,
        &path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.observe("GET", "/a", 200, 0.002);
        metrics.observe("GET", "/a", 200, 0.3);
        let text = metrics.render(0);
        assert!(
            text.contains(
                "tessera_http_requests_total{method=\"GET\",path=\"/a\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("le=\"0.0025\"} 1"));
        assert!(text.contains("le=\"1\"} 2"));
    }
}
