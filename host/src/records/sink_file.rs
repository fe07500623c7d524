//! The file sink: JSON lines appended to one file.
//!
//! The file is opened in append mode, so `logrotate` with `copytruncate`
//! works; after a failed write the file is opened again, which also picks
//! up a file that was moved away or deleted.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::sink::{OpenError, SinkError, json_lines};

/// Appends batches to a file.
pub struct FileSink {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

fn open_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(tokio::fs::File::from_std(file))
}

impl FileSink {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let file = open_append(path).map_err(|source| OpenError::File {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            file: Some(file),
        })
    }

    /// Appends the batch as JSON lines and flushes.
    pub async fn write(&mut self, batch: &[String]) -> Result<(), SinkError> {
        let file =
            match self.file.as_mut() {
                Some(file) => file,
                None => self.file.insert(open_append(&self.path).map_err(|e| {
                    SinkError::retry(format!("opening {}: {e}", self.path.display()))
                })?),
            };
        let written = async {
            file.write_all(&json_lines(batch)).await?;
            file.flush().await
        }
        .await;
        written.map_err(|e| {
            // Open afresh next time: the file may have been moved or deleted.
            self.file = None;
            SinkError::retry(format!("writing {}: {e}", self.path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_lines_after_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        std::fs::write(&path, "{\"old\":true}\n").unwrap();
        let mut sink = FileSink::open(&path).unwrap();
        sink.write(&["{\"a\":1}".into(), "{\"b\":2}".into()])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"old\":true}\n{\"a\":1}\n{\"b\":2}\n"
        );
    }

    #[test]
    fn a_missing_directory_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = FileSink::open(&dir.path().join("nope/records.jsonl"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("cannot open the record file"), "{error}");
    }
}
