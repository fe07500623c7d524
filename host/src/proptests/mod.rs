//! Property tests (the fuzz targets): random input at the places where
//! Tandem reads what others wrote — its config files, what a plugin
//! returns and what the upstream answers. They run a bounded number of cases in `cargo test`; failing
//! inputs are kept in `host/proptest-regressions/` and replayed first.

mod boundary;
mod config;
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
