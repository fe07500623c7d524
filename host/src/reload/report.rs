//! What one reload did, as logged, counted and answered on `POST /reload`.

use std::path::PathBuf;

use serde::Serialize;

/// The overall result of a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every change was applied.
    Ok,
    /// Nothing had changed and nothing failed.
    Unchanged,
    /// Some changes were applied, some failed.
    Partial,
    /// Something failed and nothing was applied.
    Error,
}

impl Outcome {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Partial => "partial",
            Outcome::Error => "error",
        }
    }
}

/// A plugin whose new files did not load.
#[derive(Debug, Clone, Serialize)]
pub struct FailedPlugin {
    /// The plugin's name.
    pub name: String,
    /// Its `.wasm` file.
    pub file: PathBuf,
    /// Why it did not load.
    pub error: String,
    /// Whether its previous version is still serving.
    pub kept_previous: bool,
}

/// A main-config key whose new value needs a restart to take effect.
#[derive(Debug, Clone, Serialize)]
pub struct RestartRequired {
    /// The key in `tandem.toml`.
    pub key: &'static str,
    /// The value Tandem runs with.
    pub running: String,
    /// The value now configured.
    pub configured: String,
}

/// What one reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The overall result.
    pub outcome: Outcome,
    /// What asked for it (`files`, `sighup`, `admin`).
    pub trigger: &'static str,
    /// One sentence saying what happened, or why nothing did.
    pub message: String,
    /// The plugin directory that was read.
    pub plugin_dir: PathBuf,
    /// Plugins that appeared.
    pub added: Vec<String>,
    /// Plugins whose `.wasm` changed.
    pub replaced: Vec<String>,
    /// Plugins whose `NAME.toml` alone changed: initialised again.
    pub reconfigured: Vec<String>,
    /// Plugins whose files are gone.
    pub removed: Vec<String>,
    /// Plugins whose files are as loaded.
    pub unchanged: Vec<String>,
    /// Plugins whose new files did not load.
    pub failed: Vec<FailedPlugin>,
    /// Main-config keys that changed but need a restart.
    pub restart_required: Vec<RestartRequired>,
    /// Why the main config could not be read again, if it could not.
    pub config_error: Option<String>,
    /// Why the plugin directory could not be read, if it could not.
    pub dir_error: Option<String>,
    /// How long the reload took, in milliseconds.
    pub duration_ms: u64,
}

impl ReloadReport {
    /// An empty report for a reload of `plugin_dir`.
    pub fn new(trigger: &'static str, plugin_dir: PathBuf) -> Self {
        Self {
            outcome: Outcome::Unchanged,
            trigger,
            message: String::new(),
            plugin_dir,
            added: Vec::new(),
            replaced: Vec::new(),
            reconfigured: Vec::new(),
            removed: Vec::new(),
            unchanged: Vec::new(),
            failed: Vec::new(),
            restart_required: Vec::new(),
            config_error: None,
            dir_error: None,
            duration_ms: 0,
        }
    }

    /// Whether the chain changed.
    pub fn applied(&self) -> bool {
        !(self.added.is_empty()
            && self.replaced.is_empty()
            && self.reconfigured.is_empty()
            && self.removed.is_empty())
    }

    /// Sets the outcome and the message from the lists.
    pub fn conclude(&mut self) {
        let failures = self.failed.len()
            + usize::from(self.config_error.is_some())
            + usize::from(self.dir_error.is_some());
        self.outcome = match (self.applied(), failures > 0) {
            (true, false) => Outcome::Ok,
            (false, false) => Outcome::Unchanged,
            (true, true) => Outcome::Partial,
            (false, true) => Outcome::Error,
        };
        let mut message = match self.outcome {
            Outcome::Unchanged => format!(
                "nothing to do: the {} plugin(s) in {} are as loaded",
                self.unchanged.len(),
                self.plugin_dir.display()
            ),
            Outcome::Ok | Outcome::Partial => format!(
                "chain switched: {} added, {} replaced, {} reconfigured, {} removed",
                self.added.len(),
                self.replaced.len(),
                self.reconfigured.len(),
                self.removed.len()
            ),
            Outcome::Error => "nothing applied: the chain that was serving still serves".into(),
        };
        if !self.failed.is_empty() {
            let names: Vec<&str> = self.failed.iter().map(|f| f.name.as_str()).collect();
            message.push_str(&format!(
                "; failed to load: {} (previous versions kept where there were any)",
                names.join(", ")
            ));
        }
        if let Some(error) = &self.dir_error {
            message.push_str(&format!("; {error}"));
        }
        if let Some(error) = &self.config_error {
            message.push_str(&format!("; config not reloaded: {error}"));
        }
        if !self.restart_required.is_empty() {
            let keys: Vec<&str> = self.restart_required.iter().map(|r| r.key).collect();
            message.push_str(&format!(
                "; changed keys that need a restart: {}",
                keys.join(", ")
            ));
        }
        self.message = message;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(name: &str) -> FailedPlugin {
        FailedPlugin {
            name: name.into(),
            file: format!("{name}.wasm").into(),
            error: "does not compile".into(),
            kept_previous: true,
        }
    }

    #[test]
    fn outcome_follows_what_was_applied_and_what_failed() {
        let mut report = ReloadReport::new("admin", "p".into());
        report.unchanged.push("a".into());
        report.conclude();
        assert_eq!(report.outcome, Outcome::Unchanged);
        assert!(report.message.contains("as loaded"), "{}", report.message);

        report.failed.push(failed("b"));
        report.conclude();
        assert_eq!(report.outcome, Outcome::Error);
        assert!(report.message.contains("b"), "{}", report.message);

        report.added.push("c".into());
        report.conclude();
        assert_eq!(report.outcome, Outcome::Partial);

        report.failed.clear();
        report.restart_required.push(RestartRequired {
            key: "listen",
            running: "a".into(),
            configured: "b".into(),
        });
        report.conclude();
        assert_eq!(report.outcome, Outcome::Ok);
        assert!(
            report.message.contains("restart: listen"),
            "{}",
            report.message
        );
    }
}
