//! `[files]` in `NAME.toml`: config values that the host reads from files
//! (plugins have no filesystem access) and puts into `[config]` before
//! `init`, e.g. a JWKS document kept in a Kubernetes Secret.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::ConfigError;

/// Largest file a config value may come from: config, not data.
pub const MAX_VALUE_FILE_BYTES: u64 = 1 << 20;

/// One `[files]` entry: a dotted key of `[config]` and the file its value
/// is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFile {
    /// Where the text goes in `[config]`, split at dots: `jwt.jwks` is the
    /// key `jwks` of the table `jwt`.
    pub key: String,
    /// The file; a relative path in `NAME.toml` is resolved against the
    /// directory of `NAME.toml`.
    pub path: PathBuf,
}

/// A [`ValueFile`] and the text read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileValue {
    /// The entry.
    pub file: ValueFile,
    /// The file's text.
    pub text: String,
}

/// Resolves the `[files]` table of the `NAME.toml` at `settings_path`.
pub(super) fn resolve(settings_path: &Path, table: BTreeMap<String, PathBuf>) -> Vec<ValueFile> {
    let base = settings_path.parent().unwrap_or(Path::new(""));
    table
        .into_iter()
        .map(|(key, path)| ValueFile {
            key,
            path: base.join(path),
        })
        .collect()
}

/// Checks that every key names a `[config]` entry: dot-separated, no
/// empty part.
pub(super) fn check_keys(settings_path: &Path, files: &[ValueFile]) -> Result<(), ConfigError> {
    match files.iter().find(|f| f.key.split('.').any(str::is_empty)) {
        Some(bad) => Err(ConfigError::Invalid {
            path: settings_path.to_owned(),
            key: table_key(&bad.key),
            message: "must be a dotted key of [config], e.g. \"jwt.jwks\"".into(),
        }),
        None => Ok(()),
    }
}

/// The `[files]` entries of a `NAME.toml`, read leniently: what to read
/// (and watch) before the file as a whole is checked. Invalid TOML has
/// none; loading it then fails with the parser's error.
pub fn value_files(settings_path: &Path, text: &str) -> Vec<ValueFile> {
    #[derive(Deserialize)]
    struct OnlyFiles {
        #[serde(default)]
        files: BTreeMap<String, PathBuf>,
    }
    match toml::from_str::<OnlyFiles>(text) {
        Ok(only) => resolve(settings_path, only.files),
        Err(_) => Vec::new(),
    }
}

/// How the key of a `[files]` entry is named in errors.
pub(super) fn table_key(key: &str) -> String {
    format!("files.\"{key}\"")
}

/// The error for a value file that could not be used: names the settings
/// file, the key, the value file and the reason.
pub fn error(settings_path: &Path, file: &ValueFile, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        path: settings_path.to_owned(),
        key: table_key(&file.key),
        message: format!("cannot read {}: {reason}", file.path.display()),
    }
}

/// The reason given for a file over [`MAX_VALUE_FILE_BYTES`].
pub fn too_large(len: u64) -> String {
    format!("{len} bytes, more than the limit of {MAX_VALUE_FILE_BYTES} (1 MiB)")
}

/// Checks the bytes of a value file: at most [`MAX_VALUE_FILE_BYTES`] of
/// UTF-8 text. The error is the reason.
pub fn text_of(bytes: Vec<u8>) -> Result<String, String> {
    if bytes.len() as u64 > MAX_VALUE_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Reads a value file. The error is the reason.
pub fn read(path: &Path) -> Result<String, String> {
    let reason = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        _ => error.to_string(),
    };
    let file = std::fs::File::open(path).map_err(reason)?;
    let len = file.metadata().map_err(reason)?.len();
    if len > MAX_VALUE_FILE_BYTES {
        return Err(too_large(len));
    }
    let mut bytes = Vec::new();
    // A file that grows while being read stops one byte past the limit.
    file.take(MAX_VALUE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(reason)?;
    text_of(bytes)
}

/// Puts `text` at the dotted `key` of `config`, creating tables on the
/// way. The error is the reason: an inline value already there, or a part
/// of the key that is not a table.
pub fn insert(config: &mut Map<String, Value>, key: &str, text: String) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut table = config;
    for (i, part) in parents.iter().enumerate() {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        table = match entry {
            Value::Object(inner) => inner,
            _ => {
                return Err(format!(
                    "`{}` in [config] is not a table",
                    parts[..=i].join(".")
                ));
            }
        };
    }
    if table.contains_key(*last) {
        return Err(format!(
            "`{key}` is also set inline in [config]; set it in one place"
        ));
    }
    table.insert((*last).to_owned(), Value::String(text));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_dotted_key_creates_tables_and_keeps_their_other_keys() {
        let mut config = object(json!({ "jwt": { "issuers": ["i"] } }));
        insert(&mut config, "jwt.jwks", "{\"keys\":[]}".into()).unwrap();
        insert(&mut config, "a.b.c", "deep".into()).unwrap();
        insert(&mut config, "top", "level".into()).unwrap();
        assert_eq!(
            Value::Object(config),
            json!({
                "jwt": { "issuers": ["i"], "jwks": "{\"keys\":[]}" },
                "a": { "b": { "c": "deep" } },
                "top": "level",
            })
        );
    }

    #[test]
    fn a_clash_with_an_inline_value_names_the_key() {
        let mut config = object(json!({ "jwt": { "jwks": "inline" }, "realm": "x" }));
        let error = insert(&mut config, "jwt.jwks", "file".into()).unwrap_err();
        assert!(
            error.contains("`jwt.jwks`") && error.contains("inline"),
            "{error}"
        );
        let error = insert(&mut config, "realm.name", "file".into()).unwrap_err();
        assert!(
            error.contains("`realm`") && error.contains("not a table"),
            "{error}"
        );
        assert_eq!(config["jwt"]["jwks"], "inline", "nothing is overwritten");
    }

    #[test]
    fn relative_paths_are_relative_to_the_settings_file() {
        let files = value_files(
            Path::new("/etc/tandem/plugins/auth.toml"),
            "order = 1\n[files]\n\"jwt.jwks\" = \"jwks.json\"\nabs = \"/run/secrets/k\"\n",
        );
        assert_eq!(
            files,
            [
                ValueFile {
                    key: "abs".into(),
                    path: "/run/secrets/k".into()
                },
                ValueFile {
                    key: "jwt.jwks".into(),
                    path: "/etc/tandem/plugins/jwks.json".into()
                },
            ]
        );
        assert!(value_files(Path::new("a.toml"), "[files\n").is_empty());
    }

    #[test]
    fn a_file_is_read_as_text_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        std::fs::write(&path, "text").unwrap();
        assert_eq!(read(&path).unwrap(), "text");
        std::fs::write(&path, vec![b'a'; MAX_VALUE_FILE_BYTES as usize + 1]).unwrap();
        assert!(read(&path).unwrap_err().contains("1 MiB"));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(read(&path).unwrap_err(), "not UTF-8 text");
        assert_eq!(read(&dir.path().join("nope")).unwrap_err(), "no such file");
    }
}
