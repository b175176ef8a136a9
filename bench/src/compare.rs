//! `compare`: prints saved reports one after the other, then the ratios of the first to the
//! second.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::stats::{ScenarioReport, operation_column_width};

#[derive(Args)]
pub struct CompareArgs {
    /// Reports written by `--json`, as LABEL=PATH; ratios are first / second.
    #[arg(required = true, num_args = 1..=2, value_parser = parse_labeled_path)]
    pub reports: Vec<(String, PathBuf)>,
    /// Free text describing the machine, stored with the results.
    #[arg(long)]
    pub machine: Option<String>,
    /// Write the reports and ratios together as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_labeled_path(arg: &str) -> Result<(String, PathBuf), String> {
    let (label, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected LABEL=PATH, got {arg}"))?;
    Ok((label.to_owned(), PathBuf::from(path)))
}

#[derive(Serialize)]
struct LabeledReport {
    label: String,
    report: ScenarioReport,
}

/// For one operation: `req_per_s` above 1 and `p50` below 1 mean the first server is faster.
#[derive(Serialize)]
struct Ratio {
    operation: String,
    req_per_s: f64,
    p50: f64,
}

#[derive(Serialize)]
struct Comparison {
    machine: Option<String>,
    /// "first / second", naming the labels.
    ratio_of: Option<String>,
    reports: Vec<LabeledReport>,
    ratios: Vec<Ratio>,
}

pub fn run(args: &CompareArgs) -> Result<String, String> {
    let mut reports = Vec::new();
    for (label, path) in &args.reports {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let report: ScenarioReport = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a report: {e}", path.display()))?;
        reports.push(LabeledReport {
            label: label.clone(),
            report,
        });
    }

    let mut output = String::new();
    for labeled in &reports {
        let _ = writeln!(
            output,
            "== {} ==\n{}",
            labeled.label,
            labeled.report.table()
        );
    }
    let mut comparison = Comparison {
        machine: args.machine.clone(),
        ratio_of: None,
        ratios: Vec::new(),
        reports: Vec::new(),
    };
    if let [first, second] = reports.as_slice() {
        let ratio_of = format!("{} / {}", first.label, second.label);
        comparison.ratios = ratios(&first.report, &second.report);
        let _ = writeln!(
            output,
            "ratio {ratio_of} (req/s above 1 and p50 below 1: {} is faster)",
            first.label
        );
        let width = operation_column_width(&first.report.operations);
        let _ = writeln!(
            output,
            "{:<width$} {:>10} {:>9}",
            "operation", "req/s", "p50"
        );
        for ratio in &comparison.ratios {
            let _ = writeln!(
                output,
                "{:<width$} {:>9.2}x {:>8.2}x",
                ratio.operation, ratio.req_per_s, ratio.p50
            );
        }
        comparison.ratio_of = Some(ratio_of);
    }
    comparison.reports = reports;

    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&comparison).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(output)
}

/// Ratios for the operations both reports contain, in the first report's order.
fn ratios(first: &ScenarioReport, second: &ScenarioReport) -> Vec<Ratio> {
    first
        .operations
        .iter()
        .filter_map(|a| {
            let b = second
                .operations
                .iter()
                .find(|b| b.operation == a.operation)?;
            Some(Ratio {
                operation: a.operation.clone(),
                req_per_s: a.req_per_s / b.req_per_s,
                p50: a.p50_ms / b.p50_ms,
            })
        })
        .collect()
}
