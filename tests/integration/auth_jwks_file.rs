//! The auth plugin's JWKS read from a file through `[files]` in
//! `NAME.toml`, outside the plugin directory as a mounted Secret would be:
//! replaced by rename, swapped by a `..data` link, broken, missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::auth::{AUDIENCE, ISSUER, bearer, claims, key_file, sign};
use crate::support::eventually;
use crate::support::plugins::wasm;
use crate::support::tandem::{Tandem, TandemBuilder, check, write_config_dir};
use crate::support::upstream::Upstream;

/// Generous bound for a change to show when nothing measures it.
const SHOWS_WITHIN: Duration = Duration::from_secs(10);

/// A JWKS holding only the key `kid` of the test keys' `jwks.json`.
fn jwks_with(kid: &str) -> String {
    let all: Value = serde_json::from_str(&key_file("jwks.json")).unwrap();
    let key = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid} in jwks.json"))
        .clone();
    json!({ "keys": [key] }).to_string()
}

/// Key A: the RSA key, kid `rsa`.
fn token_a() -> String {
    let key = EncodingKey::from_rsa_pem(key_file("rsa.pem").as_bytes()).unwrap();
    sign(Algorithm::RS256, "rsa", &key, &claims("alice", json!({})))
}

/// Key B: the P-256 key, kid `ec256`.
fn token_b() -> String {
    let key = EncodingKey::from_ec_pem(key_file("ec256.pem").as_bytes()).unwrap();
    sign(Algorithm::ES256, "ec256", &key, &claims("bob", json!({})))
}

/// `auth.toml` taking `jwt.jwks` from `jwks`.
fn settings(jwks: &Path) -> String {
    format!(
        "order = 10\n[files]\n\"jwt.jwks\" = {jwks:?}\n[config.jwt]\nissuers = [\"{ISSUER}\"]\naudiences = [\"{AUDIENCE}\"]\n",
        jwks = jwks.display().to_string(),
    )
}

/// Replaces `path` the safe way: a temporary file beside it, then a rename.
fn replace_by_rename(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

async fn status(tandem: &Tandem, token: &str) -> StatusCode {
    bearer(tandem, "/orders/1", token).await.status
}

/// The `/plugins` entry of the plugin `auth`.
async fn auth_entry(tandem: &Tandem) -> Value {
    tandem.plugin("auth").await.expect("auth is listed")
}

/// Waits until key B passes and key A is refused.
async fn rotated_to_b(tandem: &Tandem) -> bool {
    eventually(SHOWS_WITHIN, async || {
        status(tandem, &token_b()).await == StatusCode::OK
            && status(tandem, &token_a()).await == StatusCode::UNAUTHORIZED
    })
    .await
}

#[tokio::test]
async fn a_jwks_file_replaced_by_rename_rotates_the_keys_and_a_broken_one_keeps_them() {
    let upstream = Upstream::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let jwks = secrets.path().join("jwks.json");
    std::fs::write(&jwks, jwks_with("rsa")).unwrap();
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("auth", "auth", &settings(&jwks))
        .spawn()
        .await;
    assert_eq!(status(&tandem, &token_a()).await, StatusCode::OK);
    assert_eq!(status(&tandem, &token_b()).await, StatusCode::UNAUTHORIZED);

    replace_by_rename(&jwks, &jwks_with("ec256"));
    assert!(
        rotated_to_b(&tandem).await,
        "B passes and A is refused; logs:\n{}",
        tandem.logs()
    );
    let entry = auth_entry(&tandem).await;
    assert_eq!(entry["state"], "serving", "{entry}");

    replace_by_rename(&jwks, "{\"keys\": [ not json");
    let shown = eventually(SHOWS_WITHIN, async || {
        let entry = auth_entry(&tandem).await;
        entry["state"] == "serving-previous"
            && entry["load_error"]
                .as_str()
                .is_some_and(|e| e.contains("jwt.jwks"))
    })
    .await;
    assert!(
        shown,
        "the error shows in /plugins: {}; logs:\n{}",
        auth_entry(&tandem).await,
        tandem.logs()
    );
    assert_eq!(
        status(&tandem, &token_b()).await,
        StatusCode::OK,
        "the keys serving stay"
    );
    assert_eq!(status(&tandem, &token_a()).await, StatusCode::UNAUTHORIZED);

    std::fs::remove_file(&jwks).unwrap();
    let shown = eventually(SHOWS_WITHIN, async || {
        // Named with the line of the `[files]` entry (line 3).
        auth_entry(&tandem).await["load_error"]
            .as_str()
            .is_some_and(|e| e.contains("no such file") && e.contains("auth.toml:3: "))
    })
    .await;
    assert!(
        shown,
        "a deleted file is an error: {}",
        auth_entry(&tandem).await
    );
    assert_eq!(status(&tandem, &token_b()).await, StatusCode::OK);
}

/// Lays out one generation of a Secret volume holding `jwks.json`.
fn secret_generation(dir: &Path, generation: &str, jwks: &str) {
    let data = dir.join(generation);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("jwks.json"), jwks).unwrap();
}

#[tokio::test]
async fn a_secret_volume_data_link_swap_rotates_the_keys() {
    let upstream = Upstream::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path();
    // What the kubelet does: the file in a timestamped directory, `..data`
    // linking to it, and the visible name linking through `..data`.
    secret_generation(dir, "..2024_01_01_00_00_00.1", &jwks_with("rsa"));
    std::os::unix::fs::symlink("..2024_01_01_00_00_00.1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/jwks.json", dir.join("jwks.json")).unwrap();
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin("auth", "auth", &settings(&dir.join("jwks.json")))
        .spawn()
        .await;
    assert_eq!(status(&tandem, &token_a()).await, StatusCode::OK);

    secret_generation(dir, "..2024_01_01_00_05_00.2", &jwks_with("ec256"));
    std::os::unix::fs::symlink("..2024_01_01_00_05_00.2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2024_01_01_00_00_00.1")).unwrap();
    assert!(
        rotated_to_b(&tandem).await,
        "B passes and A is refused; logs:\n{}",
        tandem.logs()
    );
}

#[test]
fn tandem_check_names_the_key_and_the_path_of_a_missing_file() {
    let dir = write_config_dir(
        "http://127.0.0.1:9",
        &[(
            "auth".into(),
            wasm("auth"),
            Some(
                "[files]\n\"jwt.jwks\" = \"auth-jwks.json\"\n[config.jwt]\nissuers = [\"i\"]\n"
                    .into(),
            ),
        )],
        "",
    );
    let (code, output) = check(&dir.path().join("tandem.toml"));
    assert_ne!(code, 0, "{output}");
    let missing: PathBuf = dir.path().join("plugins").join("auth-jwks.json");
    let line = output
        .lines()
        .find(|l| l.starts_with("FAILED") && l.contains("auth"))
        .unwrap_or_else(|| panic!("a FAILED line for auth: {output}"));
    assert!(
        line.contains("jwt.jwks")
            && line.contains(&missing.display().to_string())
            && line.contains("no such file"),
        "{line}"
    );

    // With the file there, the same plugin checks fine.
    std::fs::write(&missing, jwks_with("rsa")).unwrap();
    let (code, output) = check(&dir.path().join("tandem.toml"));
    assert_eq!(code, 0, "{output}");
}
