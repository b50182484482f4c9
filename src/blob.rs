//! Raw message bodies: a key → bytes store behind one trait. The filesystem store keeps
//! them in the data folder and makes a `put` durable (file and folder fsynced) before
//! it returns; object storage can implement the same trait later.

use futures::future::BoxFuture;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where raw message bytes live. Keys are `<team_id>/<message_id>`: ASCII letters,
/// digits, `_` and one `/`.
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`; when this returns Ok the bytes survive a crash.
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, std::io::Result<()>>;
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Vec<u8>>>;
    /// Removes `key`; a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<()>>;
    /// Every key last written before `cutoff`: candidates for the sweep of bodies that
    /// no row references (`inbound::sweep_orphaned_bodies`).
    fn keys_older_than(&self, cutoff: std::time::SystemTime) -> BoxFuture<'_, std::io::Result<Vec<String>>>;
}

/// Bodies as files under `<data>/blobs/<team>/<message>.eml`.
pub struct FsBlobStore {
    root: PathBuf,
    dirs: parking_lot::Mutex<std::collections::HashMap<PathBuf, Arc<DirSync>>>,
}

/// Group fsync of one folder: a new file's name is durable once its folder is fsynced
/// after the file was created. Concurrent writers in one folder share fsyncs: each
/// takes a ticket after creating its file and returns once a sync that started after
/// that ticket has finished.
#[derive(Default)]
struct DirSync {
    requested: AtomicU64,
    synced: AtomicU64,
    lock: parking_lot::Mutex<()>,
    /// The folder's own entry in its parent is durable (this process fsynced the parent
    /// after creating, or finding, the folder).
    entry_durable: std::sync::atomic::AtomicBool,
}

impl DirSync {
    /// Creates the folder if needed and makes its entry durable, once per process:
    /// every writer until then fsyncs the parent itself, so none relies on another
    /// writer's fsync that may not have happened yet.
    fn ensure_folder(&self, dir: &Path) -> std::io::Result<()> {
        if self.entry_durable.load(Ordering::Acquire) {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        self.entry_durable.store(true, Ordering::Release);
        Ok(())
    }

    /// Takes a ticket: call once the new file exists.
    fn ticket(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Returns once a folder fsync that began after `ticket` was taken has finished,
    /// running one if none has. Blocking: called on the blocking pool.
    fn sync_after(&self, dir: &Path, ticket: u64) -> std::io::Result<()> {
        let _turn = self.lock.lock();
        if self.synced.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let upto = self.requested.load(Ordering::Acquire);
        sync_dir(dir)?;
        self.synced.fetch_max(upto, Ordering::Release);
        Ok(())
    }
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root, dirs: Default::default() })
    }

    fn dir_sync(&self, dir: &Path) -> Arc<DirSync> {
        self.dirs.lock().entry(dir.to_path_buf()).or_default().clone()
    }

    fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        let valid = !key.is_empty()
            && key.split('/').count() <= 2
            && key.split('/').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !valid {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad blob key"));
        }
        Ok(self.root.join(format!("{key}.eml")))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates and writes the file (its folder exists and is durable: `ensure_folder`);
/// the caller then fsyncs the file and its folder. A crash before that may leave a
/// partial file, but no row points at it yet: rows are committed only after `put`
/// returns.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    Ok(f)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

impl BlobStore for FsBlobStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
            let bytes = bytes.to_vec();
            let dir_sync = self.dir_sync(&dir);
            // One trip to the blocking pool: write, flush the data, then make the name
            // durable with a folder fsync shared with concurrent writers (often one
            // of them has already run it by the time the data is flushed).
            blocking(move || {
                dir_sync.ensure_folder(&dir)?;
                let file = write_file(&path, &bytes)?;
                let ticket = dir_sync.ticket();
                file.sync_data()?;
                dir_sync.sync_after(&dir, ticket)
            })
            .await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Vec<u8>>> {
        Box::pin(async move {
            let path = self.path(key)?;
            tokio::fs::read(path).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }

    fn keys_older_than(&self, cutoff: std::time::SystemTime) -> BoxFuture<'_, std::io::Result<Vec<String>>> {
        let root = self.root.clone();
        Box::pin(blocking(move || {
            let mut keys = Vec::new();
            for team in std::fs::read_dir(&root)? {
                let team = team?;
                if !team.file_type()?.is_dir() {
                    continue;
                }
                let team_name = team.file_name().to_string_lossy().into_owned();
                for file in std::fs::read_dir(team.path())? {
                    let file = file?;
                    let name = file.file_name().to_string_lossy().into_owned();
                    let Some(message) = name.strip_suffix(".eml") else { continue };
                    if file.metadata()?.modified()? < cutoff {
                        keys.push(format!("{team_name}/{message}"));
                    }
                }
            }
            Ok(keys)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path().join("blobs")).unwrap();
        let bytes = b"Subject: x\r\n\r\n\0\xff body\n".to_vec();
        store.put("team_1/msg_1", &bytes).await.unwrap();
        assert_eq!(store.get("team_1/msg_1").await.unwrap(), bytes);
        store.delete("team_1/msg_1").await.unwrap();
        store.delete("team_1/msg_1").await.unwrap();
        assert!(store.get("team_1/msg_1").await.is_err());
        assert!(store.put("../etc/passwd", b"x").await.is_err());

        store.put("team_1/old", b"x").await.unwrap();
        store.put("team_2/new", b"y").await.unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("blobs/team_1/old.eml"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(store.keys_older_than(hour_ago).await.unwrap(), ["team_1/old"]);
    }
}
