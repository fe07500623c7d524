//! `tandem check` and config errors: clear messages, right exit codes.

use std::path::PathBuf;

use crate::support::plugins::wasm;
use crate::support::tandem::{check, check_with_env, write_config_dir};

fn dir_with(plugins: &[(&str, PathBuf, Option<&str>)], extra_config: &str) -> tempfile::TempDir {
    let plugins: Vec<_> = plugins
        .iter()
        .map(|(name, path, settings)| (name.to_string(), path.clone(), settings.map(str::to_owned)))
        .collect();
    write_config_dir("http://127.0.0.1:9", &plugins, extra_config)
}

#[test]
fn good_plugins_print_one_line_each_with_their_digest() {
    let dir = dir_with(
        &[
            (
                "deny",
                wasm("deny-path"),
                Some("order = 20\n[config]\nprefixes = [\"/admin\"]\n"),
            ),
            (
                "headers",
                wasm("add-header"),
                Some(
                    "order = 10\nfailure = \"open\"\n[config]\nheaders = { x-served-by = \"tandem\" }\n",
                ),
            ),
        ],
        "",
    );
    let (code, output) = check(&dir.path().join("tandem.toml"));
    assert_eq!(code, 0, "{output}");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(wasm("deny-path")).unwrap(),
        ))
    };
    let deny = output
        .lines()
        .find(|l| l.contains("deny"))
        .expect("a line for deny");
    assert!(
        deny.contains("order=20")
            && deny.contains("hooks=on-request")
            && deny.contains("failure=closed"),
        "{deny}"
    );
    assert!(deny.contains(&digest), "{deny}");
    let headers = output
        .lines()
        .find(|l| l.contains("headers "))
        .expect("a line for headers");
    assert!(
        headers.contains("hooks=on-response") && headers.contains("failure=open"),
        "{headers}"
    );
}

#[test]
fn malformed_toml_names_the_line_and_exits_64() {
    let dir = dir_with(&[], "upstream_timeout_ms = \n");
    let (code, output) = check(&dir.path().join("tandem.toml"));
    assert_eq!(code, 64, "{output}");
    assert!(
        output.contains("tandem.toml:4:") && output.contains("upstream_timeout_ms"),
        "{output}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_line_and_exits_64() {
    let dir = dir_with(&[], "workers = \"four\"");
    let (code, output) = check(&dir.path().join("tandem.toml"));
    assert_eq!(code, 64, "{output}");
    assert!(
        output.contains("tandem.toml:4: `workers`: invalid type"),
        "{output}"
    );
}

#[test]
fn unknown_key_is_named_and_exits_64() {
    let dir = dir_with(&[], "upstream_timeuot_ms = 5");
    let (code, output) = check(&dir.path().join("tandem.toml"));
    assert_eq!(code, 64, "{output}");
    assert!(
        output.contains("unknown field `upstream_timeuot_ms`"),
        "{output}"
    );
    assert!(output.contains(":4:"), "{output}");
}

#[test]
fn broken_plugins_are_named_with_the_reason() {
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), "this is not wasm").unwrap();
    // A broken component exits 1; a bad NAME.toml is a config error, 64.
    let cases: [(&str, PathBuf, Option<&str>, &str, i32); 5] = [
        (
            "junk",
            junk.path().to_owned(),
            None,
            "not a WebAssembly file",
            1,
        ),
        (
            "stranger",
            wasm("other-world"),
            None,
            "is not a tandem:plugin@0.1.0 plugin",
            1,
        ),
        (
            "refuser",
            wasm("bad-init"),
            None,
            "init failed: returned an error: bad-init refuses to start",
            1,
        ),
        (
            "typo",
            wasm("add-header"),
            Some("ordr = 1\n"),
            "unknown field `ordr`",
            64,
        ),
        (
            "hasty",
            wasm("add-header"),
            Some("order = 1\nhook_timeout_ms = 0\n"),
            "hasty.toml:2: `hook_timeout_ms`: must be at least 1",
            64,
        ),
    ];
    for (name, path, settings, expected, exit_code) in cases {
        let dir = dir_with(&[(name, path, settings)], "");
        let (code, output) = check(&dir.path().join("tandem.toml"));
        assert_eq!(code, exit_code, "{name}: {output}");
        let line = output
            .lines()
            .find(|l| l.starts_with("FAILED"))
            .unwrap_or_else(|| panic!("{name}: {output}"));
        assert!(
            line.contains(name) && line.contains(expected),
            "{name}: {line}"
        );
    }
}

#[test]
fn a_bad_environment_value_is_named_and_exits_64() {
    let dir = dir_with(&[], "");
    let config = dir.path().join("tandem.toml");
    // Not a number: clap refuses it, and the variable is named.
    let (code, output) = check_with_env(&config, &[("TANDEM_WORKERS", "abc")]);
    assert_eq!(code, 64, "{output}");
    assert!(output.contains("TANDEM_WORKERS"), "{output}");
    // A number out of range: blamed on the variable, not on the file.
    let (code, output) = check_with_env(&config, &[("TANDEM_WORKERS", "0")]);
    assert_eq!(code, 64, "{output}");
    assert!(output.contains("TANDEM_WORKERS"), "{output}");
    assert!(!output.contains("tandem.toml"), "{output}");
    let (code, output) = check_with_env(&config, &[("TANDEM_UPSTREAM", "ftp://app:21")]);
    assert_eq!(code, 64, "{output}");
    assert!(output.contains("TANDEM_UPSTREAM"), "{output}");
}

/// `tandem run` refuses to start on a plugin it cannot load: with the
/// config-error code for a bad NAME.toml, 1 for a broken component.
#[test]
fn run_exits_64_on_bad_plugin_settings_and_1_on_a_broken_plugin() {
    for (settings, wasm_file, exit_code) in [
        (Some("quarantine_ms = 86400001\n"), wasm("add-header"), 64),
        (None, wasm("bad-init"), 1),
    ] {
        let dir = dir_with(&[("p", wasm_file, settings)], "");
        let output = std::process::Command::new(crate::support::tandem::TANDEM)
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("tandem.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(exit_code), "{stderr}");
        assert!(stderr.contains("plugin(s) failed to load"), "{stderr}");
    }
}

/// A reader that goes away before the report (`tandem check | head -1`,
/// `| grep -q`) does not turn the verdict into a crash: the exit code is
/// still the check's.
#[test]
fn the_exit_code_survives_a_reader_that_went_away() {
    use std::process::{Command, Stdio};
    let good = dir_with(&[], "");
    let bad = dir_with(
        &[("deny", wasm("deny-path"), Some("[config]\nwrong = 1\n"))],
        "",
    );
    for (dir, expected) in [(&good, 0), (&bad, 1)] {
        let mut child = Command::new(crate::support::tandem::TANDEM)
            .arg("check")
            .arg("--config")
            .arg(dir.path().join("tandem.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Closed before anything is written.
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(expected), "{status:?}");
    }
}
