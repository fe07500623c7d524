//! The config loaders (`tandem.toml` and `NAME.toml`) with random text and
//! random structures: they never panic, and a syntax error names a line
//! that exists, with that line's text.

use std::path::Path;

use proptest::prelude::*;

use super::bounded;
use crate::config::{Config, ConfigError, Overrides};
use crate::plugin_settings::PluginSettings;

/// Inputs that once broke a TOML-reading program somewhere, kept as fixed
/// cases.
const SEEDS: &[&str] = &[
    "",
    "\u{0}",
    "[",
    "[[limits.route]]",
    "[limits]\n[limits]\n",
    "upstream = \"http://127.0.0.1:1\"\n[limits]\nmax_connections = 0\n",
    "upstream = \"http://127.0.0.1:1\"\n[limits]\nmax_request_body_bytes = -1\n",
    "upstream = \"http://127.0.0.1:1\"\n[limits]\nheader_read_timeout_ms = 18446744073709551615\n",
    "upstream = 'http://[::1]:1'\nlisten = '[::]:0'\n",
    "upstream = \"http://é:1\"\n",
    "a = \"\u{feff}\"\n\u{2028}b = 1",
    "upstream = \"\r\n\"",
    "x = 1\r\ny = 2\rz",
    "é = 1\n",
    "[plugins]\ndir = \"\u{0}\"\nupstream = 1\n",
];

/// Checks the error's promise: a syntax error points at a real line.
fn check_error(text: &str, error: &ConfigError) {
    if let ConfigError::Syntax {
        line, text: shown, ..
    } = error
    {
        let lines: Vec<&str> = text.lines().collect();
        assert!(*line >= 1, "line {line} for {text:?}");
        assert!(
            *line <= lines.len().max(1) + 1,
            "line {line} of {} for {text:?}",
            lines.len()
        );
        if let Some(real) = lines.get(line - 1) {
            assert_eq!(shown, real.trim_end(), "{text:?}");
        }
    }
    // Every error renders without panicking.
    let _ = error.to_string();
}

fn load(text: &str) {
    if let Err(error) = Config::from_text(
        Path::new("/etc/tandem/tandem.toml"),
        text,
        &Overrides::default(),
    ) {
        check_error(text, &error);
    }
    if let Err(error) = PluginSettings::parse(Path::new("p.toml"), text) {
        check_error(text, &error);
    }
}

#[test]
fn seeds_never_panic() {
    for seed in SEEDS {
        load(seed);
    }
}

/// A line that looks like TOML: keys Tandem knows, tables, and values of
/// every type, some broken.
fn toml_ish_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("listen"),
        Just("upstream"),
        Just("admin"),
        Just("upstream_timeout_ms"),
        Just("dir"),
        Just("max_connections"),
        Just("max_request_header_bytes"),
        Just("max_request_body_bytes"),
        Just("header_read_timeout_ms"),
        Just("prefix"),
        Just("order"),
        Just("failure"),
        Just("trip_after"),
        Just("hook_timeout_ms"),
        Just("memory_limit_mb"),
        Just("clock_resolution_us"),
        Just("bogus"),
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        "[a-z0-9:/.\\[\\]é\"'-]{0,24}".prop_map(|s| format!("\"{s}\"")),
        Just("true".to_owned()),
        Just("1.5e300".to_owned()),
        Just("[1, \"a\"]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        "\\PC{0,12}",
    ];
    prop_oneof![
        4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop_oneof![
            Just("[limits]".to_owned()),
            Just("[plugins]".to_owned()),
            Just("[[limits.route]]".to_owned()),
            Just("[config]".to_owned()),
            Just("[limits".to_owned()),
        ],
        1 => "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(bounded(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        load(&text);
    }

    #[test]
    fn toml_ish_text_never_panics(lines in prop::collection::vec(toml_ish_line(), 0..12)) {
        load(&lines.join("\n"));
    }

    #[test]
    fn valid_limits_load_with_their_values(
        max_connections in 1u32..=1_000_000,
        header_bytes in 8192u64..=(16 << 20),
        body in any::<u64>(),
        timeout in 1u64..=86_400_000,
        prefixes in prop::collection::vec("/[a-z]{0,8}", 0..5),
    ) {
        let mut text = format!(
            "upstream = \"http://127.0.0.1:3000\"\n[limits]\nmax_connections = {max_connections}\n\
             max_request_header_bytes = {header_bytes}\nidle_timeout_ms = {timeout}\n"
        );
        // TOML integers are signed 64-bit.
        let body = body.min(i64::MAX as u64);
        text.push_str(&format!("max_request_body_bytes = {body}\n"));
        for (i, prefix) in prefixes.iter().enumerate() {
            text.push_str(&format!(
                "[[limits.route]]\nprefix = \"{prefix}\"\nmax_request_body_bytes = {i}\n"
            ));
        }
        let config = Config::from_text(Path::new("t.toml"), &text, &Overrides::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(config.limits.max_connections, max_connections);
        prop_assert_eq!(config.limits.max_request_header_bytes as u64, header_bytes);
        prop_assert_eq!(config.limits.idle_timeout.as_millis() as u64, timeout);
        // Only the route "/" covers "/"; the first one given wins.
        let expected = prefixes.iter().position(|p| p == "/").map_or(body, |i| i as u64);
        prop_assert_eq!(config.limits.body_limit_for("/"), expected);
    }

    #[test]
    fn out_of_range_limits_name_the_key(
        key in prop_oneof![
            Just(("max_connections", 0i64)),
            Just(("max_connections", 1_000_001)),
            Just(("max_request_header_bytes", 8191)),
            Just(("max_request_headers", 0)),
            Just(("header_read_timeout_ms", 0)),
            Just(("request_timeout_ms", 86_400_001)),
            Just(("plugin_stack_kb", 63)),
        ],
    ) {
        let (key, value) = key;
        let text = format!("upstream = \"http://127.0.0.1:1\"\n[limits]\n{key} = {value}\n");
        let error = Config::from_text(Path::new("t.toml"), &text, &Overrides::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        prop_assert!(error.contains(key), "{}: {}", key, error);
    }
}
