//! Bodies in S3-compatible object storage (`SENDMUX_BLOB_URL=s3://bucket/prefix`,
//! API.md §12): one object per body, so any node reads what any other node wrote.
//!
//! Layout under the prefix: `bodies/<team_id>/<ulid>` for a body whose key is
//! `<team_id>/<ulid>` (the ULID is made at the put, so keys sort by time), and
//! `sweep/horizon`, the time up to which leftovers have been swept.
//!
//! **Leftovers.** A put returns once the object is stored, before the row that points to
//! it commits; a node that dies in between leaves an object no row references. No
//! segment file tells which objects those are, so maintenance sweeps by time: each pass
//! takes, per team, the objects written after the horizon and more than
//! [`LEFTOVER_AGE`] ago (a put commits within seconds or never), deletes those no row
//! references, and moves the horizon once every team's window is settled. Listing
//! starts at the horizon (S3's `start-after`), so a pass reads only what was written
//! since the last one.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Abandoned, BlobStore, valid_name};
use crate::config::S3Location;

/// How old an object must be before a sweep may call it a leftover.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(2 * 3600);

pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    leftover_age: Duration,
    sweep: Mutex<Sweep>,
}

#[derive(Default)]
struct Sweep {
    /// Unix ms; `None` until read from the bucket.
    horizon_ms: Option<i64>,
    pass: Option<Pass>,
}

/// The windows handed out by the last `abandoned`, and which are settled.
struct Pass {
    until_ms: i64,
    unsettled: HashSet<String>,
    failed: bool,
}

fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        e => io::Error::other(e.to_string()),
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("not a body key: {what}"))
}

/// The smallest ULID of the millisecond `ms`: every key made at or after it sorts after.
fn ulid_at(ms: i64) -> String {
    ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()
}

/// A body's bytes handed to the HTTP client without copying them.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl S3BlobStore {
    /// Connects and checks that the bucket answers, so a wrong setting stops the start.
    pub async fn connect(location: &S3Location) -> anyhow::Result<Self> {
        // The HTTP client takes the process's rustls provider: ring, as everywhere else
        // here (an error means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_region(&location.region);
        if let Some(endpoint) = &location.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = &location.credentials {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret.expose());
        }
        let store = builder.build()?;
        let this = Self::new(Arc::new(store), &location.prefix, LEFTOVER_AGE);
        this.store.list_with_delimiter(Some(&this.root)).await?;
        Ok(this)
    }

    /// A store over any `ObjectStore`; `leftover_age` is [`LEFTOVER_AGE`] outside tests.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, leftover_age: Duration) -> Self {
        Self { store, root: Path::from(prefix), leftover_age, sweep: Mutex::new(Sweep::default()) }
    }

    /// Sweeps objects younger than [`LEFTOVER_AGE`] too (tests).
    pub fn with_leftover_age(mut self, age: Duration) -> Self {
        self.leftover_age = age;
        self
    }

    fn bodies(&self) -> Path {
        self.root.clone().join("bodies")
    }

    fn team_dir(&self, team_id: &str) -> Path {
        self.bodies().join(team_id)
    }

    fn horizon_path(&self) -> Path {
        self.root.clone().join("sweep").join("horizon")
    }

    /// The object of `key` (`<team_id>/<ulid>`); anything else is refused.
    fn path_of(&self, key: &str) -> io::Result<Path> {
        let (team, id) = key.split_once('/').ok_or_else(|| invalid(key))?;
        if !valid_name(team) || ulid::Ulid::from_string(id).is_err() {
            return Err(invalid(key));
        }
        Ok(self.team_dir(team).join(id))
    }

    async fn horizon(&self) -> io::Result<i64> {
        if let Some(h) = self.sweep.lock().horizon_ms {
            return Ok(h);
        }
        let h = match self.store.get(&self.horizon_path()).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(io_error)?;
                String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0)
            }
            Err(object_store::Error::NotFound { .. }) => 0,
            Err(e) => return Err(io_error(e)),
        };
        self.sweep.lock().horizon_ms = Some(h);
        Ok(h)
    }

    /// Marks `team`'s window settled; when it was the last one, moves the horizon.
    async fn settled(&self, team: &str, ok: bool) -> io::Result<()> {
        let done = {
            let mut sweep = self.sweep.lock();
            let Some(pass) = sweep.pass.as_mut() else { return Ok(()) };
            pass.unsettled.remove(team);
            pass.failed |= !ok;
            match pass.unsettled.is_empty() {
                false => None,
                true => sweep.pass.take().filter(|p| !p.failed).map(|p| p.until_ms),
            }
        };
        if let Some(until) = done {
            let text = PutPayload::from(Bytes::from(until.to_string()));
            self.store.put(&self.horizon_path(), text).await.map_err(io_error)?;
            self.sweep.lock().horizon_ms = Some(until);
        }
        Ok(())
    }
}

impl BlobStore for S3BlobStore {
    fn put(&self, team_id: &str, bytes: Arc<Vec<u8>>) -> BoxFuture<'_, io::Result<String>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            if !valid_name(&team_id) {
                return Err(invalid(&team_id));
            }
            let key = format!("{team_id}/{}", ulid::Ulid::new());
            let path = self.path_of(&key)?;
            let payload = PutPayload::from(Bytes::from_owner(Shared(bytes)));
            self.store.put(&path, payload).await.map_err(io_error)?;
            Ok(key)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let found = self.store.get(&path).await.map_err(io_error)?;
            Ok(found.bytes().await.map_err(io_error)?.to_vec())
        })
    }

    fn stream<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<super::BodyStream>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let found = self.store.get(&path).await.map_err(io_error)?;
            Ok(found.into_stream().map_err(io_error).boxed())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match self.store.delete(&self.path_of(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(io_error(e)),
            }
        })
    }

    fn delete_team<'a>(&'a self, team_id: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if !valid_name(team_id) {
                return Err(invalid(team_id));
            }
            let listed = self.store.list(Some(&self.team_dir(team_id))).map_ok(|meta| meta.location).boxed();
            let mut deleted = self.store.delete_stream(listed);
            while let Some(result) = deleted.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(io_error(e)),
                }
            }
            Ok(())
        })
    }

    /// One window per team: objects written after the horizon and before
    /// `now - leftover_age`.
    fn abandoned(&self) -> BoxFuture<'_, io::Result<Vec<Abandoned>>> {
        Box::pin(async move {
            let from = self.horizon().await?;
            let until = crate::store::now_ms() - self.leftover_age.as_millis() as i64;
            if until <= from {
                return Ok(Vec::new());
            }
            let listed = self.store.list_with_delimiter(Some(&self.bodies())).await.map_err(io_error)?;
            let teams: Vec<String> = listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_owned))
                .filter(|t| valid_name(t))
                .collect();
            let found: Vec<Abandoned> = teams
                .iter()
                .map(|team| Abandoned {
                    team_id: team.clone(),
                    segment: format!("{from}-{until}"),
                    created_ms: from,
                    key_prefix: format!("{team}/"),
                })
                .collect();
            let unsettled = teams.into_iter().collect::<HashSet<_>>();
            self.sweep.lock().pass = Some(Pass { until_ms: until, unsettled, failed: false });
            if found.is_empty() {
                // Nothing stored yet: the window is settled as it is.
                self.settled("", true).await?;
            }
            Ok(found)
        })
    }

    fn settle<'a>(&'a self, window: &'a Abandoned, keep: &'a [String]) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(async move {
            let (from, until) = window
                .segment
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
                .ok_or_else(|| invalid(&window.segment))?;
            let dir = self.team_dir(&window.team_id);
            let start = dir.clone().join(ulid_at(from));
            let end = ulid_at(until);
            let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
            let result: io::Result<usize> = async {
                let mut leftovers = Vec::new();
                let mut listed = self.store.list_with_offset(Some(&dir), &start);
                while let Some(meta) = listed.next().await {
                    let meta = meta.map_err(io_error)?;
                    let Some(id) = meta.location.filename() else { continue };
                    if ulid::Ulid::from_string(id).is_err() || id >= end.as_str() {
                        continue;
                    }
                    if !keep.contains(format!("{}/{id}", window.team_id).as_str()) {
                        leftovers.push(meta.location);
                    }
                }
                let n = leftovers.len();
                let paths = futures::stream::iter(leftovers.into_iter().map(Ok)).boxed();
                let mut deleted = self.store.delete_stream(paths);
                while let Some(result) = deleted.next().await {
                    match result {
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(io_error(e)),
                    }
                }
                Ok(n)
            }
            .await;
            self.settled(&window.team_id, result.is_ok()).await?;
            result
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
