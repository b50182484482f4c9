//! Raw message bodies: a key → bytes store behind one trait. The filesystem store keeps
//! them in the data folder and makes a `put` durable (file and folder fsynced) before
//! it returns; object storage can implement the same trait later.

use futures::future::BoxFuture;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where raw message bytes live. Keys are `<team_id>/<message_id>`: ASCII letters,
/// digits, `_` and one `/`.
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`; when this returns Ok the bytes survive a crash.
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, std::io::Result<()>>;
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Vec<u8>>>;
    /// Removes `key`; a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<()>>;
}

/// Bodies as files under `<data>/blobs/<team>/<message>.eml`.
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
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

/// Writes to a temporary name, fsyncs, renames into place and fsyncs the folder, so a
/// crash leaves either no file or the whole file under its name.
fn put_blocking(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("blob path without folder"))?;
    let new_dir = !dir.exists();
    if new_dir {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    if new_dir && let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

impl BlobStore for FsBlobStore {
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let bytes = bytes.to_vec();
            blocking(move || put_blocking(&path, &bytes)).await
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
    }
}
