//! What a reload would change: the plugin directory read as it is now (never
//! a file caught half-written), compared with the plugins that are serving.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::plugin_settings::files::{self, FileValue, MAX_VALUE_FILE_BYTES, ValueFile};
use crate::runtime::loader::plugin_files;
use crate::runtime::plugin::sha256_hex;

/// A file counts as written once its size and modification time have not
/// changed for this long.
pub const SETTLE: Duration = Duration::from_millis(200);

/// How long a scan waits for a file that keeps changing before it gives up
/// on that file for this reload (a later change triggers another).
pub const MAX_SETTLE_WAIT: Duration = Duration::from_secs(5);

/// How often a scan starts again because a Kubernetes ConfigMap volume
/// switched its `..data` link while the scan was reading.
const MAX_SCAN_ATTEMPTS: usize = 5;

/// One plugin's files as found in the directory.
#[derive(Debug, Clone)]
pub struct Found {
    /// The plugin's name.
    pub name: String,
    /// Its `.wasm` file.
    pub wasm_path: PathBuf,
    /// The bytes of the `.wasm` (shared with the compiler thread).
    pub wasm: Arc<[u8]>,
    /// Hex SHA-256 of the `.wasm`.
    pub sha256: String,
    /// Its `NAME.toml`.
    pub settings_path: PathBuf,
    /// The text of `NAME.toml`, if there is one.
    pub settings_text: Option<String>,
    /// The values of its `[files]` table, read with the rest.
    pub files: Vec<FileValue>,
}

impl Found {
    /// The digest of each value file: what tells a changed file apart.
    pub fn file_digests(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|value| (value.file.key.clone(), sha256_hex(value.text.as_bytes())))
            .collect()
    }
}

/// A plugin whose files could not be read in a usable state.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// The plugin's name.
    pub name: String,
    /// Its `.wasm` file.
    pub wasm_path: PathBuf,
    /// Why.
    pub error: String,
}

/// The plugin directory as one consistent picture.
#[derive(Debug, Default)]
pub struct Scan {
    /// Plugins whose files were read.
    pub found: Vec<Found>,
    /// Plugins whose files were there but could not be read or used.
    pub unreadable: Vec<Unreadable>,
    /// Plugins whose files changed while being read or kept changing: not
    /// a failure, they are read again on their next change.
    pub pending: Vec<Unreadable>,
    /// Every file named in a `[files]` table, read or not: the watcher
    /// watches them too.
    pub value_files: BTreeSet<PathBuf>,
    /// The `..data` link of each value file's directory before the value
    /// files were read: see [`scan`].
    value_generations: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Scan {
    /// Whether a value file's directory is a ConfigMap or Secret volume
    /// whose `..data` link switched while the value files were read.
    fn value_generation_switched(&self) -> bool {
        self.value_generations
            .iter()
            .any(|(dir, generation)| configmap_generation(dir) != *generation)
    }
}

impl Scan {
    /// Every plugin name whose files are in the directory.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.found
            .iter()
            .map(|f| f.name.as_str())
            .chain(self.unreadable.iter().map(|u| u.name.as_str()))
            .chain(self.pending.iter().map(|u| u.name.as_str()))
    }

    /// Records a file that could not be used, as pending if it was still
    /// changing.
    fn skip(&mut self, name: &str, wasm_path: &Path, path: &Path, error: ReadError) {
        let entry = Unreadable {
            name: name.to_owned(),
            wasm_path: wasm_path.to_owned(),
            error: format!("{}: {error}", path.display()),
        };
        match error {
            ReadError::Unsettled => self.pending.push(entry),
            _ => self.unreadable.push(entry),
        }
    }
}

/// What a file looked like at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }

    /// Modified less than [`SETTLE`] ago. A time in the future (a clock
    /// skewed between machines) says nothing either way: not young.
    fn young(&self) -> bool {
        self.modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < SETTLE)
    }
}

/// Why a file was not read.
#[derive(Debug)]
enum ReadError {
    /// Gone (deleted, or a dangling link of a ConfigMap volume mid-update).
    Missing,
    /// Changed while being read, or kept changing past [`MAX_SETTLE_WAIT`].
    Unsettled,
    /// Any other I/O error.
    Io(std::io::Error),
    /// Not UTF-8 (`NAME.toml` only).
    NotText,
    /// Read, but not usable (a value file that is too large or not text).
    Invalid(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("file vanished while being read"),
            ReadError::Unsettled => {
                f.write_str("still being written; it is read again on its next change")
            }
            ReadError::Io(error) => write!(f, "{error}"),
            ReadError::NotText => f.write_str("not UTF-8 text"),
            ReadError::Invalid(reason) => f.write_str(reason),
        }
    }
}

fn stamp(path: &Path) -> Result<Stamp, ReadError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Stamp::of(&meta)),
        Err(error) if error.kind() == ErrorKind::NotFound => Err(ReadError::Missing),
        Err(error) => Err(ReadError::Io(error)),
    }
}

/// Waits until none of `paths` is still being written: each was last
/// modified longer ago than [`SETTLE`], or its size and modification time
/// stayed the same across one [`SETTLE`]. Files that keep changing past
/// [`MAX_SETTLE_WAIT`] are returned, to be skipped this time.
async fn settle(paths: &[&Path]) -> Vec<PathBuf> {
    let started = Instant::now();
    let stamps = |paths: &[&Path]| -> Vec<Option<Stamp>> {
        paths.iter().map(|path| stamp(path).ok()).collect()
    };
    let young = |stamp: &Option<Stamp>| stamp.is_some_and(|s| s.young());
    let mut before = stamps(paths);
    loop {
        if !before.iter().any(young) {
            return Vec::new();
        }
        tokio::time::sleep(SETTLE).await;
        let after = stamps(paths);
        let changing: Vec<PathBuf> = paths
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| b != a)
            .map(|(path, _)| path.to_path_buf())
            .collect();
        if changing.is_empty() {
            return Vec::new();
        }
        if started.elapsed() > MAX_SETTLE_WAIT {
            return changing;
        }
        before = after;
    }
}

/// Reads a settled file, and checks that it did not change during the read
/// (nor just before: a write in progress, such as a truncation followed by
/// the new content, must not be taken for the new file).
async fn read_checked(path: &Path) -> Result<Vec<u8>, ReadError> {
    let before = stamp(path)?;
    if before.young() {
        return Err(ReadError::Unsettled);
    }
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(error) => return Err(ReadError::Io(error)),
    };
    let after = stamp(path)?;
    if after == before && bytes.len() as u64 == after.len {
        Ok(bytes)
    } else {
        Err(ReadError::Unsettled)
    }
}

/// The target of a ConfigMap volume's `..data` link, if the directory is one.
fn configmap_generation(dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(dir.join("..data")).ok()
}

/// Reads every plugin in `dir`. If the directory (or the directory of a
/// value file) is a Kubernetes ConfigMap volume whose `..data` link switched
/// during the scan, scans again, so the result is entirely the old or
/// entirely the new generation.
pub async fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let generation = configmap_generation(dir);
        let scan = scan_once(dir).await?;
        let switched = configmap_generation(dir) != generation || scan.value_generation_switched();
        if !switched || attempt >= MAX_SCAN_ATTEMPTS {
            return Ok(scan);
        }
        tracing::debug!(dir = %dir.display(), "..data switched during the scan; scanning again");
    }
}

async fn scan_once(dir: &Path) -> std::io::Result<Scan> {
    let mut scan = Scan::default();
    let files = plugin_files(dir)?;
    let paths: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|(_, wasm)| (wasm.clone(), wasm.with_extension("toml")))
        .collect();
    let all: Vec<&Path> = paths
        .iter()
        .flat_map(|(wasm, settings)| [wasm.as_path(), settings.as_path()])
        .collect();
    let changing = settle(&all).await;
    for (name, wasm_path) in files {
        let settings_path = wasm_path.with_extension("toml");
        if let Some(path) = changing
            .iter()
            .find(|p| **p == wasm_path || **p == settings_path)
        {
            scan.skip(&name, &wasm_path, path, ReadError::Unsettled);
            continue;
        }
        let wasm = match read_checked(&wasm_path).await {
            Ok(bytes) => bytes,
            // Deleted since the listing: the plugin is gone.
            Err(ReadError::Missing) => continue,
            Err(error) => {
                scan.skip(&name, &wasm_path, &wasm_path, error);
                continue;
            }
        };
        let settings_text = match read_checked(&settings_path).await {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    scan.skip(&name, &wasm_path, &settings_path, ReadError::NotText);
                    continue;
                }
            },
            Err(ReadError::Missing) => None,
            Err(error) => {
                scan.skip(&name, &wasm_path, &settings_path, error);
                continue;
            }
        };
        scan.found.push(Found {
            sha256: sha256_hex(&wasm),
            name,
            wasm_path,
            wasm: wasm.into(),
            settings_path,
            settings_text,
            files: Vec::new(),
        });
    }
    read_value_files(&mut scan).await;
    Ok(scan)
}

/// Reads the files named in the `[files]` tables of the plugins found, once
/// settled like the plugins' own files. A plugin whose value file cannot be
/// read is unreadable (the error names the key, the file and why); one whose
/// value file is still being written is pending.
async fn read_value_files(scan: &mut Scan) {
    let wanted: Vec<Vec<ValueFile>> = scan
        .found
        .iter()
        .map(|found| match &found.settings_text {
            Some(text) => files::value_files(&found.settings_path, text),
            None => Vec::new(),
        })
        .collect();
    scan.value_files
        .extend(wanted.iter().flatten().map(|file| file.path.clone()));
    let all: Vec<&Path> = scan.value_files.iter().map(PathBuf::as_path).collect();
    let changing = settle(&all).await;
    let dirs: BTreeSet<&Path> = scan.value_files.iter().filter_map(|p| p.parent()).collect();
    scan.value_generations = dirs
        .into_iter()
        .map(|dir| (dir.to_owned(), configmap_generation(dir)))
        .collect();
    let found = std::mem::take(&mut scan.found);
    'plugins: for (mut found, wanted) in found.into_iter().zip(wanted) {
        for file in wanted {
            let read = if changing.contains(&file.path) {
                Err(ReadError::Unsettled)
            } else {
                read_value(&file.path).await
            };
            match read {
                Ok(text) => found.files.push(FileValue { file, text }),
                Err(ReadError::Unsettled) => {
                    scan.skip(
                        &found.name,
                        &found.wasm_path,
                        &file.path,
                        ReadError::Unsettled,
                    );
                    continue 'plugins;
                }
                Err(error) => {
                    let reason = match error {
                        ReadError::Missing => "no such file".to_owned(),
                        other => other.to_string(),
                    };
                    scan.unreadable.push(Unreadable {
                        name: found.name.clone(),
                        wasm_path: found.wasm_path.clone(),
                        error: files::error(&found.settings_path, &file, &reason)
                            .placed_in(
                                &found.settings_path,
                                found.settings_text.as_deref().unwrap_or_default(),
                            )
                            .to_string(),
                    });
                    continue 'plugins;
                }
            }
        }
        scan.found.push(found);
    }
}

/// Reads a settled value file: at most [`MAX_VALUE_FILE_BYTES`] of text.
async fn read_value(path: &Path) -> Result<String, ReadError> {
    let len = stamp(path)?.len;
    if len > MAX_VALUE_FILE_BYTES {
        return Err(ReadError::Invalid(files::too_large(len)));
    }
    files::text_of(read_checked(path).await?).map_err(ReadError::Invalid)
}

/// What is serving for one plugin name: enough to tell whether its files
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// Digest of the `.wasm` it was loaded from.
    pub sha256: String,
    /// The `NAME.toml` text it was loaded with.
    pub settings_text: Option<String>,
    /// The key and digest of each `[files]` value it was loaded with.
    pub file_digests: Vec<(String, String)>,
}

/// What a reload does to one plugin found in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New: compile, check and initialise it.
    Add,
    /// The `.wasm` changed: compile the new one.
    Replace,
    /// Only `NAME.toml` or a file of its `[files]` changed: initialise the
    /// same component again.
    Reconfigure,
    /// Nothing changed: keep the version that is serving.
    Keep,
}

/// Compares a found plugin with what is serving under its name.
pub fn change(found: &Found, serving: Option<&Serving>) -> Change {
    match serving {
        None => Change::Add,
        Some(serving) if serving.sha256 != found.sha256 => Change::Replace,
        Some(serving)
            if serving.settings_text != found.settings_text
                || serving.file_digests != found.file_digests() =>
        {
            Change::Reconfigure
        }
        Some(_) => Change::Keep,
    }
}

/// Names that are serving but whose files are no longer there. A plugin
/// whose files exist but could not be read is not removed.
pub fn removed<'a, V>(serving: &'a BTreeMap<String, V>, scan: &Scan) -> Vec<&'a str> {
    let present: Vec<&str> = scan.names().collect();
    serving
        .keys()
        .map(String::as_str)
        .filter(|name| !present.contains(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, sha: &str, settings: Option<&str>) -> Found {
        Found {
            name: name.into(),
            wasm_path: PathBuf::from(format!("{name}.wasm")),
            wasm: Arc::from(&[][..]),
            sha256: sha.into(),
            settings_path: PathBuf::from(format!("{name}.toml")),
            settings_text: settings.map(str::to_owned),
            files: Vec::new(),
        }
    }

    fn serving(sha: &str, settings: Option<&str>) -> Serving {
        Serving {
            sha256: sha.into(),
            settings_text: settings.map(str::to_owned),
            file_digests: Vec::new(),
        }
    }

    #[test]
    fn changes_are_told_apart_by_digest_and_settings_text() {
        let plugin = found("a", "1", Some("order = 1"));
        assert_eq!(change(&plugin, None), Change::Add);
        assert_eq!(
            change(&plugin, Some(&serving("2", Some("order = 1")))),
            Change::Replace
        );
        assert_eq!(
            change(&plugin, Some(&serving("2", Some("order = 2")))),
            Change::Replace,
            "a new wasm wins over a new config: both are loaded anew"
        );
        assert_eq!(
            change(&plugin, Some(&serving("1", None))),
            Change::Reconfigure
        );
        assert_eq!(
            change(&plugin, Some(&serving("1", Some("order = 1")))),
            Change::Keep
        );
    }

    #[test]
    fn a_changed_value_file_reconfigures() {
        let mut plugin = found("a", "1", Some("[files]\nk = \"v\"\n"));
        plugin.files.push(FileValue {
            file: ValueFile {
                key: "k".into(),
                path: "v".into(),
            },
            text: "new".into(),
        });
        let mut current = serving("1", Some("[files]\nk = \"v\"\n"));
        current.file_digests = vec![("k".into(), sha256_hex(b"old"))];
        assert_eq!(change(&plugin, Some(&current)), Change::Reconfigure);
        current.file_digests = plugin.file_digests();
        assert_eq!(change(&plugin, Some(&current)), Change::Keep);
    }

    #[tokio::test]
    async fn value_files_are_read_beside_the_plugin_or_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::create_dir(&secrets).unwrap();
        std::fs::write(plugins.join("p.wasm"), b"wasm").unwrap();
        std::fs::write(
            plugins.join("p.toml"),
            "[files]\n\"a.b\" = \"p.json\"\nc = \"../secrets/c.json\"\n",
        )
        .unwrap();
        std::fs::write(plugins.join("p.json"), "beside").unwrap();
        std::fs::write(secrets.join("c.json"), "elsewhere").unwrap();
        std::fs::write(plugins.join("q.wasm"), b"wasm").unwrap();
        std::fs::write(plugins.join("q.toml"), "[files]\nk = \"../secrets/gone\"\n").unwrap();
        let scan = scan(&plugins).await.unwrap();
        assert_eq!(scan.found.len(), 1, "{scan:?}");
        let texts: Vec<(&str, &str)> = scan.found[0]
            .files
            .iter()
            .map(|v| (v.file.key.as_str(), v.text.as_str()))
            .collect();
        assert_eq!(texts, [("a.b", "beside"), ("c", "elsewhere")]);
        assert_eq!(scan.unreadable.len(), 1, "{scan:?}");
        let error = &scan.unreadable[0].error;
        assert!(
            scan.unreadable[0].name == "q"
                && error.contains("files.\"k\"")
                && error.contains("no such file"),
            "{error}"
        );
        assert_eq!(scan.value_files.len(), 3, "{:?}", scan.value_files);
    }

    #[test]
    fn only_plugins_without_files_are_removed() {
        let serving: BTreeMap<String, ()> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|n| (n.to_owned(), ()))
            .collect();
        let scan = Scan {
            found: vec![found("a", "1", None)],
            unreadable: vec![Unreadable {
                name: "b".into(),
                wasm_path: "b.wasm".into(),
                error: "permission denied".into(),
            }],
            pending: vec![Unreadable {
                name: "d".into(),
                wasm_path: "d.wasm".into(),
                error: "still being written".into(),
            }],
            ..Scan::default()
        };
        assert_eq!(removed(&serving, &scan), ["c"]);
    }

    #[tokio::test]
    async fn a_fresh_file_is_read_once_settled_and_a_missing_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wasm");
        std::fs::write(&path, b"abc").unwrap();
        let started = Instant::now();
        assert!(settle(&[path.as_path()]).await.is_empty());
        assert!(
            started.elapsed() >= SETTLE,
            "a fresh file is watched for a while"
        );
        assert_eq!(read_checked(&path).await.unwrap(), b"abc");
        assert!(matches!(
            read_checked(&dir.path().join("nope")).await,
            Err(ReadError::Missing)
        ));
    }

    #[tokio::test]
    async fn a_configmap_volume_is_read_through_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let generation = dir.path().join("..2024_01_01");
        std::fs::create_dir(&generation).unwrap();
        std::fs::write(generation.join("p.wasm"), b"wasm").unwrap();
        std::fs::write(generation.join("p.toml"), "order = 3\n").unwrap();
        std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).unwrap();
        for file in ["p.wasm", "p.toml"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.path().join(file)).unwrap();
        }
        let scan = scan(dir.path()).await.unwrap();
        assert_eq!(scan.found.len(), 1, "{scan:?}");
        assert_eq!(scan.found[0].name, "p");
        assert_eq!(&*scan.found[0].wasm, b"wasm");
        assert_eq!(scan.found[0].settings_text.as_deref(), Some("order = 3\n"));
    }
}
