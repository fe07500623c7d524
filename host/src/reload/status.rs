//! What `/plugins` says about each plugin beyond the version serving: how
//! many versions were loaded under its name, and why the newest files did
//! not load, if they did not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// The load history of one plugin name, kept across reloads.
#[derive(Debug, Clone, Default)]
pub struct PluginRecord {
    /// Versions loaded under this name since start (initial load included).
    pub versions_loaded: u64,
    /// Why the plugin's current files did not load, if they did not.
    pub load_error: Option<String>,
    /// When that failure happened.
    pub failed_at: Option<SystemTime>,
    /// The `.wasm` file of the failed attempt.
    pub file: PathBuf,
}

/// How a plugin stands, as shown in `/plugins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginState {
    /// The newest files are loaded and serving.
    Serving,
    /// The newest files failed to load; the version before them serves.
    ServingPrevious,
    /// The files failed to load and no earlier version exists.
    Failed,
}

impl PluginState {
    /// The name used in `/plugins`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Serving => "serving",
            PluginState::ServingPrevious => "serving-previous",
            PluginState::Failed => "failed",
        }
    }
}

/// Records by plugin name.
#[derive(Debug, Default)]
pub struct Book {
    records: BTreeMap<String, PluginRecord>,
}

impl Book {
    /// The record of `name`, if the name was ever seen.
    pub fn get(&self, name: &str) -> Option<&PluginRecord> {
        self.records.get(name)
    }

    /// A new version of `name` was loaded and serves.
    pub fn loaded(&mut self, name: &str) {
        let record = self.records.entry(name.to_owned()).or_default();
        record.versions_loaded += 1;
        record.load_error = None;
        record.failed_at = None;
    }

    /// The files of `name` failed to load.
    pub fn failed(&mut self, name: &str, file: PathBuf, error: String) {
        let record = self.records.entry(name.to_owned()).or_default();
        record.load_error = Some(error);
        record.failed_at = Some(SystemTime::now());
        record.file = file;
    }

    /// The files of `name` match what serves (or are gone): any earlier
    /// failure no longer applies.
    pub fn settled(&mut self, name: &str) {
        if let Some(record) = self.records.get_mut(name) {
            record.load_error = None;
            record.failed_at = None;
        }
    }

    /// Clears the failures of every name not in `present`: a plugin whose
    /// files are gone has nothing left to fail.
    pub fn settle_all_except(&mut self, present: &[&str]) {
        for (name, record) in &mut self.records {
            if !present.contains(&name.as_str()) {
                record.load_error = None;
                record.failed_at = None;
            }
        }
    }

    /// The state of `name`, given whether a version of it is serving.
    pub fn state(&self, name: &str, serving: bool) -> Option<PluginState> {
        let failed = self.get(name).is_some_and(|r| r.load_error.is_some());
        match (serving, failed) {
            (true, false) => Some(PluginState::Serving),
            (true, true) => Some(PluginState::ServingPrevious),
            (false, true) => Some(PluginState::Failed),
            (false, false) => None,
        }
    }

    /// Plugins that failed and have no version serving, given the names
    /// that serve.
    pub fn failed_without_version<'a>(
        &'a self,
        serving: &'a [&str],
    ) -> impl Iterator<Item = (&'a str, &'a PluginRecord)> + 'a {
        self.records
            .iter()
            .filter(|(name, record)| {
                record.load_error.is_some() && !serving.contains(&name.as_str())
            })
            .map(|(name, record)| (name.as_str(), record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_across_failures_and_errors_clear_on_success() {
        let mut book = Book::default();
        book.loaded("a");
        book.failed("a", "a.wasm".into(), "does not compile".into());
        assert_eq!(book.state("a", true), Some(PluginState::ServingPrevious));
        book.loaded("a");
        assert_eq!(book.state("a", true), Some(PluginState::Serving));
        assert_eq!(book.get("a").unwrap().versions_loaded, 2);
        book.failed("b", "b.wasm".into(), "init failed".into());
        assert_eq!(book.state("b", false), Some(PluginState::Failed));
        let failed: Vec<_> = book.failed_without_version(&["a"]).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "b");
        book.settled("b");
        assert_eq!(book.state("b", false), None);
    }
}
