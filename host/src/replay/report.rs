//! The text that `tandem replay` prints: one block per exchange, then a
//! summary with hook timings.

use std::fmt::Write as _;

use super::driver::{Change, Loaded, Outcome, RecordReport};
use super::timing::{Stats, Timings};

/// The header block about the loaded plugin.
pub fn loaded(loaded: &Loaded) -> String {
    format!(
        "plugin {}: {} ({:.1} KB, sha256 {})\n  compiled in {:.1} ms, instantiated and initialised in {:.1} ms\n  hooks {}; failure {}; instances {}\n",
        loaded.name,
        loaded.file.display(),
        loaded.size_bytes as f64 / 1024.0,
        &loaded.sha256[..12],
        loaded.compile_ms,
        loaded.init_ms,
        if loaded.hooks.is_empty() {
            "none".to_owned()
        } else {
            loaded.hooks.join(", ")
        },
        loaded.failure,
        loaded.instances,
    )
}

fn joined(values: &[String]) -> String {
    values.join(", ")
}

fn change(change: &Change) -> String {
    let (before, after) = (joined(&change.before), joined(&change.after));
    match change.what {
        "target" | "status" => format!("set {} {before} -> {after}", change.what),
        "property" if change.before.is_empty() => {
            format!("set property {} = {after}", change.name)
        }
        "property" => format!("set property {}: {before} -> {after}", change.name),
        what => {
            let what = what.replace('-', " ");
            if change.before.is_empty() {
                format!("add {what} {}: {after}", change.name)
            } else if change.after.is_empty() {
                format!("remove {what} {}: {before}", change.name)
            } else {
                format!("set {what} {}: {before} -> {after}", change.name)
            }
        }
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// One exchange.
pub fn record(report: &RecordReport) -> String {
    let mut out = format!(
        "line {}: {} {}\n",
        report.line, report.method, report.target
    );
    for hook in &report.hooks {
        let outcome = match &hook.outcome {
            Outcome::Continued => "continued".to_owned(),
            Outcome::Done => "done".to_owned(),
            Outcome::Responded { status, .. } => format!("responded {status}"),
            Outcome::Failed { kind, error, .. } => format!("failed ({kind}): {error}"),
        };
        let _ = writeln!(out, "  {} {:.1} µs: {outcome}", hook.hook, hook.micros);
        let mut detail = |line: String| {
            let _ = writeln!(out, "    {line}");
        };
        match &hook.outcome {
            Outcome::Responded { headers, body, .. } => {
                for (name, value) in headers {
                    detail(format!("reply header {name}: {value}"));
                }
                if !body.is_empty() {
                    detail(format!("reply body {body}"));
                }
            }
            Outcome::Failed { policy, .. } => detail(format!("failure policy: {policy}")),
            Outcome::Continued | Outcome::Done => {}
        }
        for each in &hook.changes {
            detail(change(each));
        }
        for log in &hook.logs {
            let fields = if log.fields.is_empty() {
                String::new()
            } else {
                format!(" {}", log.fields)
            };
            detail(format!("log {} {:?}{fields}", log.level, log.message));
        }
        for metric in &hook.metrics {
            detail(format!(
                "count {} {} -> {}",
                metric.series,
                number(metric.before),
                number(metric.after)
            ));
        }
        for record in &hook.records {
            detail(format!("record {record}"));
        }
        for drop in &hook.records_dropped {
            detail(format!(
                "record dropped ({}){}",
                drop.reason,
                if drop.count == 1 {
                    String::new()
                } else {
                    format!(" x{}", drop.count)
                }
            ));
        }
    }
    let upstream = if report.upstream_called {
        "upstream called"
    } else {
        "upstream not called"
    };
    let _ = writeln!(
        out,
        "  => {} from {}, {upstream}",
        report.status, report.answered_by
    );
    out
}

fn stats_row(out: &mut String, label: &str, stats: &Stats) {
    let _ = writeln!(
        out,
        "  {label:<14}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
        stats.calls, stats.mean_us, stats.p50_us, stats.p99_us, stats.max_us
    );
}

/// The closing summary: outcomes of the first pass and timings of all.
pub fn summary(first_pass: &[RecordReport], plugin: &str, timings: &Timings) -> String {
    let reached = first_pass.iter().filter(|r| r.upstream_called).count();
    let by_plugin = first_pass
        .iter()
        .filter(|r| r.answered_by == plugin)
        .count();
    let failed = first_pass
        .iter()
        .filter(|r| r.answered_by == "tandem")
        .count();
    let mut out = format!(
        "{} exchanges: {reached} reached the upstream, {by_plugin} answered by {plugin}, {failed} failed\n",
        first_pass.len()
    );
    let _ = writeln!(
        out,
        "  {:<14}{:>8}{:>10}{:>10}{:>10}{:>10}",
        "time (µs)", "calls", "mean", "p50", "p99", "max"
    );
    for (hook, stats) in &timings.hooks {
        stats_row(&mut out, hook, stats);
    }
    if let Some(stats) = &timings.per_request {
        stats_row(&mut out, "per exchange", stats);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_as_sentences() {
        let c = |what, name: &str, before: &[&str], after: &[&str]| Change {
            what,
            name: name.into(),
            before: before.iter().map(|s| s.to_string()).collect(),
            after: after.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            change(&c("header", "x-a", &[], &["1"])),
            "add header x-a: 1"
        );
        assert_eq!(
            change(&c("response-header", "x-a", &["1", "2"], &[])),
            "remove response header x-a: 1, 2"
        );
        assert_eq!(
            change(&c("header", "x-a", &["1"], &["2"])),
            "set header x-a: 1 -> 2"
        );
        assert_eq!(
            change(&c("target", "", &["/a"], &["/b?c"])),
            "set target /a -> /b?c"
        );
        assert_eq!(
            change(&c("property", "k", &[], &["v"])),
            "set property k = v"
        );
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }
}
