//! What a reload would change: the plugin directory read as it is now (never
//! a file caught half-written), compared with the plugins that are serving.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    /// Plugins whose files were there but not readable or still changing.
    pub unreadable: Vec<Unreadable>,
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
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("file vanished while being read"),
            ReadError::Unsettled => {
                f.write_str("still being written; it is read again on its next change")
            }
            ReadError::Io(error) => write!(f, "{error}"),
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

/// Reads every plugin in `dir`. If the directory is a Kubernetes ConfigMap
/// volume whose `..data` link switched during the scan, scans again, so the
/// result is entirely the old or entirely the new generation.
pub async fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let generation = configmap_generation(dir);
        let scan = scan_once(dir).await?;
        if configmap_generation(dir) == generation || attempt >= MAX_SCAN_ATTEMPTS {
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
            scan.unreadable.push(Unreadable {
                name,
                error: format!("{}: {}", path.display(), ReadError::Unsettled),
                wasm_path,
            });
            continue;
        }
        let unreadable = |error: String| Unreadable {
            name: name.clone(),
            wasm_path: wasm_path.clone(),
            error,
        };
        let wasm = match read_checked(&wasm_path).await {
            Ok(bytes) => bytes,
            // Deleted since the listing: the plugin is gone.
            Err(ReadError::Missing) => continue,
            Err(error) => {
                scan.unreadable
                    .push(unreadable(format!("{}: {error}", wasm_path.display())));
                continue;
            }
        };
        let settings_text = match read_checked(&settings_path).await {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    scan.unreadable.push(unreadable(format!(
                        "{}: not UTF-8 text",
                        settings_path.display()
                    )));
                    continue;
                }
            },
            Err(ReadError::Missing) => None,
            Err(error) => {
                scan.unreadable
                    .push(unreadable(format!("{}: {error}", settings_path.display())));
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
        });
    }
    Ok(scan)
}

/// What is serving for one plugin name: enough to tell whether its files
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// Digest of the `.wasm` it was loaded from.
    pub sha256: String,
    /// The `NAME.toml` text it was loaded with.
    pub settings_text: Option<String>,
}

/// What a reload does to one plugin found in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New: compile, check and initialise it.
    Add,
    /// The `.wasm` changed: compile the new one.
    Replace,
    /// Only `NAME.toml` changed: initialise the same component again.
    Reconfigure,
    /// Nothing changed: keep the version that is serving.
    Keep,
}

/// Compares a found plugin with what is serving under its name.
pub fn change(found: &Found, serving: Option<&Serving>) -> Change {
    match serving {
        None => Change::Add,
        Some(serving) if serving.sha256 != found.sha256 => Change::Replace,
        Some(serving) if serving.settings_text != found.settings_text => Change::Reconfigure,
        Some(_) => Change::Keep,
    }
}

/// Names that are serving but whose files are no longer there. A plugin
/// whose files exist but could not be read is not removed.
pub fn removed<'a, V>(serving: &'a BTreeMap<String, V>, scan: &Scan) -> Vec<&'a str> {
    serving
        .keys()
        .filter(|name| {
            !scan.found.iter().any(|f| &f.name == *name)
                && !scan.unreadable.iter().any(|u| &u.name == *name)
        })
        .map(String::as_str)
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
        }
    }

    fn serving(sha: &str, settings: Option<&str>) -> Serving {
        Serving {
            sha256: sha.into(),
            settings_text: settings.map(str::to_owned),
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
    fn only_plugins_without_files_are_removed() {
        let serving: BTreeMap<String, ()> = ["a", "b", "c"]
            .into_iter()
            .map(|n| (n.to_owned(), ()))
            .collect();
        let scan = Scan {
            found: vec![found("a", "1", None)],
            unreadable: vec![Unreadable {
                name: "b".into(),
                wasm_path: "b.wasm".into(),
                error: "still changing".into(),
            }],
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
