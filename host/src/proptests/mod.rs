//! Property tests (the fuzz targets): random input at the places where
//! Tandem reads what others wrote — its config files, what a plugin
//! returns, what clients send and what the upstream answers. They run a bounded number of cases in `cargo test`; failing
//! inputs are kept in `host/proptest-regressions/` and replayed first.

mod boundary;
mod config;
mod inbound;
mod upstream;

use proptest::test_runner::Config;

/// Cases per property: enough to find shallow bugs on every run, few
/// enough that the suite takes seconds.
pub fn bounded(cases: u32) -> Config {
    Config {
        cases,
        // Shrinking is for debugging a failure, not for every run.
        max_shrink_iters: 1024,
        ..Config::default()
    }
}

/// Header lines of distinct `x-` names (clear of the names the proxy acts
/// on) with `values`, each letter of a name in upper case where its bit in
/// `cases` is set.
pub fn header_lines(
    names: &std::collections::BTreeSet<String>,
    values: &[String],
    cases: u64,
) -> Vec<String> {
    names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let name: String = format!("x-{name}")
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if cases >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            format!("{name}: {value}\r\n")
        })
        .collect()
}
