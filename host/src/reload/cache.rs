//! The compiled-artifact cache: components Tandem compiled itself, kept on
//! disk by the digest of their `.wasm` and the engine's settings, so that a
//! restart or a swap back to a known version does not compile again.
//!
//! Only files this process (or an earlier Tandem of the same user) wrote
//! into its own private directory are ever loaded: entries are written to a
//! temporary file and renamed into place, the directory must belong to the
//! user and be closed to others, and nothing in the plugin directory is
//! ever treated as precompiled code.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::Digest;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::runtime::plugin::{LoadError, compile};

/// Beyond this many bytes of entries, the least recently used are removed.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

/// Temporary files older than this are leftovers of a crash.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Suffix of cache entries.
const ENTRY_SUFFIX: &str = ".cwasm";

/// Prefix of files being written.
const TEMP_PREFIX: &str = ".tmp-";

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored, if the cache is on).
    Compiled,
}

impl Origin {
    /// `cached` or `compiled`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cached => "cached",
            Origin::Compiled => "compiled",
        }
    }
}

/// A private directory of compiled components.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    temp_counter: AtomicU64,
}

/// A [`Hasher`] that feeds SHA-256, so the key is the same in every process
/// (std's hasher makes no such promise).
struct Sha256Hasher(sha2::Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A short fingerprint of everything in the engine that compiled code
/// depends on: target, compiler flags, tunables, features and the wasmtime
/// version.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..12])
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir`. Refuses a directory
    /// that belongs to someone else or that others may write to: its files
    /// are loaded as machine code.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let meta = fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "{} may be written by other users (mode {:o}); use a private directory",
                dir.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        // A file we create carries our user id: the directory must too.
        let probe = dir.join(format!("{TEMP_PREFIX}probe-{}", std::process::id()));
        let probe_uid = fs::File::create(&probe)
            .and_then(|file| file.metadata())
            .map(|m| m.uid())
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()));
        let _ = fs::remove_file(&probe);
        if probe_uid? != meta.uid() {
            return Err(format!(
                "{} belongs to another user; use a directory of your own",
                dir.display()
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: engine_fingerprint(engine),
            temp_counter: AtomicU64::new(0),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for a `.wasm` with this digest lives.
    pub fn entry_path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}{ENTRY_SUFFIX}", self.engine_key))
    }

    /// The component for `bytes` (whose digest is `sha256`): from the cache
    /// if present, else compiled and stored. Blocking: call it off the
    /// async workers.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<(Component, Origin), LoadError> {
        let entry = self.entry_path(sha256);
        if entry.exists() {
            match deserialize_own_entry(engine, &entry) {
                Ok(component) => {
                    touch(&entry);
                    return Ok((component, Origin::Cached));
                }
                Err(error) => {
                    // Written by another build or damaged: compile again
                    // and replace it.
                    tracing::warn!(entry = %entry.display(), "cache entry not usable, compiling: {error:#}");
                    let _ = fs::remove_file(&entry);
                }
            }
        }
        let component = compile(engine, bytes)?;
        match component.serialize() {
            Ok(image) => {
                if let Err(error) = self.store(&entry, &image) {
                    tracing::warn!(entry = %entry.display(), %error, "cannot write cache entry");
                } else {
                    self.evict(&entry);
                }
            }
            Err(error) => tracing::warn!("cannot serialize compiled component: {error:#}"),
        }
        Ok((component, Origin::Compiled))
    }

    /// Writes `image` to a temporary file and renames it into place, so a
    /// reader never sees a partial entry.
    fn store(&self, entry: &Path, image: &[u8]) -> std::io::Result<()> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(image)?;
            file.sync_all()?;
            fs::rename(&temp, entry)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Removes the least recently used entries past [`MAX_CACHE_BYTES`]
    /// (never `keep`), and temporary files left by a crash.
    fn evict(&self, keep: &Path) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(now);
            if name.starts_with(TEMP_PREFIX) {
                if now.duration_since(modified).unwrap_or_default() > STALE_TEMP_AGE {
                    let _ = fs::remove_file(&path);
                }
            } else if name.ends_with(ENTRY_SUFFIX) {
                files.push((modified, meta.len(), path));
            }
        }
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= MAX_CACHE_BYTES {
                break;
            }
            if path != keep && fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Marks an entry as recently used.
fn touch(entry: &Path) {
    let _ = fs::File::options()
        .write(true)
        .open(entry)
        .and_then(|file| file.set_modified(SystemTime::now()));
}

/// Loads a cache entry as compiled code.
#[allow(unsafe_code)]
fn deserialize_own_entry(engine: &Engine, entry: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be machine code that
    // wasmtime produced and that nobody changes while it is mapped. Both
    // hold: `entry` is in the cache directory that `ArtifactCache::open`
    // checked to belong to this user and to be closed to others; every file
    // in it was produced by `Component::serialize` in `load_or_compile` and
    // renamed into place whole by `store`, and entries are only ever
    // replaced by rename or removed, never rewritten in place, so a mapping
    // stays valid. Files from the plugin directory never come here: they go
    // through `compile`, which only accepts WebAssembly. wasmtime itself
    // rejects an entry made by another version or with other settings.
    unsafe { Component::deserialize_file(engine, entry) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::engine::{PoolSize, build_engine};

    /// The smallest component: the header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        build_engine(PoolSize { instances: 4 }).unwrap().0
    }

    #[test]
    fn a_second_load_comes_from_the_cache() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("c"), &engine).unwrap();
        let sha = crate::runtime::plugin::sha256_hex(EMPTY_COMPONENT);
        let (_, origin) = cache
            .load_or_compile(&engine, &sha, EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(origin, Origin::Compiled);
        assert!(cache.entry_path(&sha).exists());
        let (_, origin) = cache
            .load_or_compile(&engine, &sha, EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(origin, Origin::Cached);
        let leftovers: Vec<_> = fs::read_dir(cache.dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files remain");
    }

    #[test]
    fn a_damaged_entry_is_compiled_again() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), &engine).unwrap();
        let sha = crate::runtime::plugin::sha256_hex(EMPTY_COMPONENT);
        fs::write(cache.entry_path(&sha), b"not an artifact").unwrap();
        let (_, origin) = cache
            .load_or_compile(&engine, &sha, EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(origin, Origin::Compiled);
        let (_, origin) = cache
            .load_or_compile(&engine, &sha, EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(origin, Origin::Cached, "the damaged entry was replaced");
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let error = ArtifactCache::open(dir.path(), &engine).unwrap_err();
        assert!(error.contains("other users"), "{error}");
    }

    #[test]
    fn the_key_depends_on_the_engine_settings() {
        let pooled = engine();
        let plain = Engine::new(&wasmtime::Config::new()).unwrap();
        assert_eq!(engine_fingerprint(&pooled), engine_fingerprint(&engine()));
        assert_ne!(engine_fingerprint(&pooled), engine_fingerprint(&plain));
    }
}
