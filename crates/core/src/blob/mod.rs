//! Raw message bodies behind one trait: inbound mail exactly as it arrived, and
//! outbound requests too large for their row. Two stores: the filesystem store here,
//! which appends them to per-team segment files and makes a `put` durable before it
//! returns (one node), and [`s3::S3BlobStore`], one object per body in S3-compatible
//! object storage that every node reads (many nodes).
//!
//! Why segments: a file per body cost a file creation, an fsync of the file and one of
//! its folder per message, and on ext4 the inode allocation alone was a third of the
//! ingest CPU. Here one writer thread appends every body waiting at that moment to its
//! team's open segment and pays one `fdatasync` per segment per round, so concurrent
//! senders share their flushes the way the store's group commit shares its commits.
//!
//! Layout: `<root>/<team_id>/<segment>.open` while a writer appends to it (the writer
//! holds an exclusive lock on it), renamed to `<segment>.seg` once sealed. A body's key
//! is `<team_id>/<segment>:<offset>:<length>`. Bodies start on 4 KiB boundaries, so
//! deleting one punches a hole over whole filesystem blocks and its bytes are gone from
//! the disk at once; a sealed segment whose blocks are all punched is removed. Keys of
//! the earlier layout (`<team_id>/<message_id>`, a file `<message_id>.eml`) are still read
//! and deleted.

use futures::StreamExt;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

use crate::files::create_private_dir;

pub mod s3;

/// A body read piece by piece.
pub type BodyStream = futures::stream::BoxStream<'static, io::Result<bytes::Bytes>>;

/// Where raw message bytes live.
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` for `team_id` and returns their key; when this returns Ok the
    /// bytes survive a crash.
    fn put(&self, team_id: &str, bytes: Arc<Vec<u8>>) -> BoxFuture<'_, io::Result<String>>;
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>>;
    /// The bytes under `key` as they arrive, for answers that pass a body on whole
    /// (`…/raw`): an object store's body is never held in memory at once. The default
    /// reads it whole first (a local segment file reads at disk speed).
    fn stream<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<BodyStream>> {
        Box::pin(async move {
            let bytes = bytes::Bytes::from(self.get(key).await?);
            Ok(futures::stream::once(std::future::ready(Ok(bytes))).boxed())
        })
    }
    /// Removes the bytes under `key`, durably; a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Removes every body of the team.
    fn delete_team<'a>(&'a self, team_id: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Segments that a writer left open (a crash) and that no live writer holds: their
    /// bodies written after the last commit belong to no message (`recover`).
    fn abandoned(&self) -> BoxFuture<'_, io::Result<Vec<Abandoned>>>;
    /// Keeps the bodies of `keep` (keys in the abandoned segment), removes every other
    /// byte of it, and seals it.
    fn settle<'a>(&'a self, segment: &'a Abandoned, keep: &'a [String]) -> BoxFuture<'a, io::Result<usize>>;
    /// Seals what is open and stops writing; puts after this fail.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Bodies a writer that is gone may have left without a row pointing to them: a
/// segment file left open (filesystem), or a team's objects written in a time window
/// (object storage).
#[derive(Debug, Clone, PartialEq)]
pub struct Abandoned {
    pub team_id: String,
    /// The segment's name, or the window `<from_ms>-<until_ms>`.
    pub segment: String,
    /// When the segment was created (its name is a ULID), or the window starts, Unix ms:
    /// no body in it belongs to a message made long before.
    pub created_ms: i64,
    /// The prefix shared by the keys of every body in it.
    pub key_prefix: String,
}

/// Bodies start at multiples of this, so a deleted body's blocks are its own.
const ALIGN: u64 = 4096;
/// A segment takes no more appends once it is this long.
const SEGMENT_BYTES: u64 = 16 << 20;
/// The longest body a key may name: far beyond any message size limit, and small
/// enough that reading it cannot ask for an absurd allocation.
const MAX_BODY: u64 = 1 << 32;
/// An open segment no put has touched for this long is sealed.
const IDLE_SEAL: Duration = Duration::from_secs(300);
/// An unlocked `.open` segment must be this old before it counts as abandoned: a writer
/// locks its new segment right after creating it.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// A round writes its bodies in pieces of at most this many bytes (or one body).
const WRITE_CHUNK: usize = 1 << 20;

fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a key names.
#[derive(Debug, PartialEq)]
enum Key<'a> {
    /// A range of a segment.
    Range { team: &'a str, segment: &'a str, offset: u64, len: u64 },
    /// A file of the earlier layout.
    File { team: &'a str, message: &'a str },
}

fn parse_key(key: &str) -> io::Result<Key<'_>> {
    let bad = || io::Error::new(ErrorKind::InvalidInput, "bad blob key");
    let (team, rest) = key.split_once('/').ok_or_else(bad)?;
    if !valid_name(team) {
        return Err(bad());
    }
    let mut parts = rest.split(':');
    let name = parts.next().filter(|n| valid_name(n)).ok_or_else(bad)?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Ok(Key::File { team, message: name }),
        (Some(offset), Some(len), None) => {
            let offset: u64 = offset.parse().map_err(|_| bad())?;
            let len: u64 = len.parse().map_err(|_| bad())?;
            if !offset.is_multiple_of(ALIGN) || len > MAX_BODY || offset > u64::MAX / 2 {
                return Err(bad());
            }
            Ok(Key::Range { team, segment: name, offset, len })
        }
        _ => Err(bad()),
    }
}

struct Put {
    team_id: String,
    bytes: Arc<Vec<u8>>,
    reply: oneshot::Sender<io::Result<String>>,
}

enum Command {
    Put(Put),
    /// Forget the team's open segment, then remove its folder.
    DeleteTeam(String, oneshot::Sender<io::Result<()>>),
    /// Seal everything and stop.
    Close(oneshot::Sender<()>),
}

/// Bodies in segment files under `<data>/blobs`.
pub struct FsBlobStore {
    paths: Paths,
    commands: mpsc::UnboundedSender<Command>,
    /// The segments this process's writer has open: never taken for abandoned (on a
    /// network filesystem a lock probe by this same process would succeed, and closing
    /// the probe could even release the writer's own lock).
    open: Arc<parking_lot::Mutex<HashSet<String>>>,
}

impl FsBlobStore {
    /// Opens the store and starts its writer thread, which seals its segments and ends
    /// on [`BlobStore::close`] or when the store is dropped.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        create_private_dir(&root)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let open = Arc::new(parking_lot::Mutex::new(HashSet::new()));
        let writer = Writer {
            paths: Paths { root: root.clone() },
            open: HashMap::new(),
            open_names: open.clone(),
            failed: Vec::new(),
            durable_folders: Default::default(),
        };
        std::thread::Builder::new().name("sendmux-blobs".into()).spawn(move || writer.run(rx))?;
        Ok(Self { paths: Paths { root }, commands, open })
    }

    fn send(&self, command: Command) -> io::Result<()> {
        self.commands.send(command).map_err(|_| io::Error::other("the blob writer stopped"))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

impl BlobStore for FsBlobStore {
    fn put(&self, team_id: &str, bytes: Arc<Vec<u8>>) -> BoxFuture<'_, io::Result<String>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            if !valid_name(&team_id) {
                return Err(io::Error::new(ErrorKind::InvalidInput, "bad team id for a blob"));
            }
            let (reply, answer) = oneshot::channel();
            self.send(Command::Put(Put { team_id, bytes, reply }))?;
            answer.await.map_err(|_| io::Error::other("the blob writer stopped"))?
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>> {
        Box::pin(async move {
            match parse_key(key)? {
                Key::File { team, message } => tokio::fs::read(self.paths.legacy(team, message)).await,
                // An empty body occupies no block: its segment may be long gone.
                Key::Range { len: 0, .. } => Ok(Vec::new()),
                Key::Range { team, segment, offset, len } => {
                    let (paths, team, segment) = (self.paths.clone(), team.to_owned(), segment.to_owned());
                    blocking(move || {
                        let (file, _) = paths.open(&team, &segment, false)?;
                        let mut buf = vec![0; len as usize];
                        file.read_exact_at(&mut buf, offset)?;
                        Ok(buf)
                    })
                    .await
                }
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let result = match parse_key(key)? {
                Key::File { team, message } => tokio::fs::remove_file(self.paths.legacy(team, message)).await,
                Key::Range { team, segment, offset, len } => {
                    let (paths, team, segment) = (self.paths.clone(), team.to_owned(), segment.to_owned());
                    blocking(move || {
                        let (file, sealed) = paths.open(&team, &segment, true)?;
                        erase(&file, offset, align_up(len))?;
                        // A sealed segment with no data block left holds nothing.
                        if sealed && file.metadata()?.blocks() == 0 {
                            std::fs::remove_file(paths.segment(&team, &segment, true))?;
                        }
                        Ok(())
                    })
                    .await
                }
            };
            match result {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
    }

    fn delete_team<'a>(&'a self, team_id: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if !valid_name(team_id) {
                return Err(io::Error::new(ErrorKind::InvalidInput, "bad team id for a blob"));
            }
            let (reply, answer) = oneshot::channel();
            self.send(Command::DeleteTeam(team_id.to_owned(), reply))?;
            answer.await.map_err(|_| io::Error::other("the blob writer stopped"))?
        })
    }

    fn abandoned(&self) -> BoxFuture<'_, io::Result<Vec<Abandoned>>> {
        let root = self.paths.root.clone();
        let ours = self.open.clone();
        Box::pin(blocking(move || {
            let mut found = Vec::new();
            let cutoff = SystemTime::now() - ABANDONED_AFTER;
            for team in std::fs::read_dir(&root)?.flatten() {
                let team_id = team.file_name().to_string_lossy().into_owned();
                if !team.file_type().is_ok_and(|t| t.is_dir()) || !valid_name(&team_id) {
                    continue;
                }
                // Another process may rename or remove entries meanwhile: skip those.
                let Ok(files) = std::fs::read_dir(team.path()) else { continue };
                for file in files.flatten() {
                    let name = file.file_name().to_string_lossy().into_owned();
                    let Some(segment) = name.strip_suffix(".open").filter(|s| valid_name(s)) else { continue };
                    let Ok(created) = ulid::Ulid::from_string(segment) else { continue };
                    if ours.lock().contains(segment) {
                        continue;
                    }
                    if !file.metadata().and_then(|m| m.modified()).is_ok_and(|m| m <= cutoff) {
                        continue;
                    }
                    // A live writer holds its segment's lock.
                    let Ok(probe) = File::open(file.path()) else { continue };
                    if probe.try_lock().is_err() {
                        continue;
                    }
                    found.push(Abandoned {
                        team_id: team_id.clone(),
                        segment: segment.to_owned(),
                        created_ms: created.timestamp_ms() as i64,
                        key_prefix: format!("{team_id}/{segment}:"),
                    });
                }
            }
            Ok(found)
        }))
    }

    fn settle<'a>(&'a self, segment: &'a Abandoned, keep: &'a [String]) -> BoxFuture<'a, io::Result<usize>> {
        let paths = self.paths.clone();
        let segment = segment.clone();
        let mut ranges = Vec::new();
        for key in keep {
            if let Ok(Key::Range { team, segment: s, offset, len }) = parse_key(key)
                && team == segment.team_id
                && s == segment.segment
            {
                ranges.push((offset, offset + align_up(len)));
            }
        }
        Box::pin(blocking(move || {
            let open = paths.segment(&segment.team_id, &segment.segment, false);
            let file = File::options().read(true).write(true).open(&open)?;
            file.try_lock().map_err(|_| io::Error::other("the segment is in use"))?;
            ranges.sort_unstable();
            let end = align_up(file.metadata()?.len());
            let (mut erased, mut at) = (0, 0);
            for (start, stop) in ranges.into_iter().chain([(end, end)]) {
                if start > at {
                    erase(&file, at, start - at)?;
                    erased += 1;
                }
                at = at.max(stop);
            }
            if file.metadata()?.blocks() == 0 {
                std::fs::remove_file(&open)?;
            } else {
                std::fs::rename(&open, paths.segment(&segment.team_id, &segment.segment, true))?;
            }
            Ok(erased)
        }))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (reply, done) = oneshot::channel();
            if self.send(Command::Close(reply)).is_ok() {
                let _ = done.await;
            }
        })
    }
}

/// Where things are under the root; cheap to clone into blocking closures.
#[derive(Clone)]
struct Paths {
    root: PathBuf,
}

impl Paths {
    fn segment(&self, team: &str, segment: &str, sealed: bool) -> PathBuf {
        self.root.join(team).join(format!("{segment}.{}", if sealed { "seg" } else { "open" }))
    }

    fn legacy(&self, team: &str, message: &str) -> PathBuf {
        self.root.join(team).join(format!("{message}.eml"))
    }

    /// Opens a segment under whichever name it has now: sealing renames it, atomically,
    /// so one of the two exists at any moment (the third look covers a rename between
    /// the first two). Also says whether it is sealed.
    fn open(&self, team: &str, segment: &str, write: bool) -> io::Result<(File, bool)> {
        for sealed in [true, false, true] {
            match File::options().read(true).write(write).open(self.segment(team, segment, sealed)) {
                Ok(f) => return Ok((f, sealed)),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(ErrorKind::NotFound, "no such segment"))
    }
}

/// Removes `len` bytes at `offset` from the disk, durably: a punched hole where the
/// filesystem supports it (the blocks are freed), zeros written over them where it
/// does not.
fn erase(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len) {
            Ok(()) => return file.sync_all(),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(e.into()),
        }
    }
    let size = file.metadata()?.len();
    let stop = size.min(offset + len);
    let zeros = vec![0u8; ALIGN as usize];
    let mut at = offset;
    while at < stop {
        let n = (stop - at).min(ALIGN);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    file.sync_data()
}

/// An open segment of one team.
struct Segment {
    name: String,
    file: File,
    len: u64,
    last_put: std::time::Instant,
}

/// The writer thread: appends every put waiting at that moment, then one `fdatasync`
/// per segment, then answers them all.
struct Writer {
    paths: Paths,
    open: HashMap<String, Segment>,
    /// The names in `open`, shared with the store (see `FsBlobStore::open`).
    open_names: Arc<parking_lot::Mutex<HashSet<String>>>,
    /// Segments given up after a failed write or flush. They stay open, and locked,
    /// until the process ends: bodies acknowledged from them earlier may still be on
    /// their way to a commit, and an unlocked `.open` segment is another process's to
    /// settle.
    failed: Vec<File>,
    /// Team folders whose entry in the root this process has made durable.
    durable_folders: HashSet<String>,
}

/// Most puts handled in one round.
const MAX_ROUND: usize = 1024;

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut closing = None;
        while let Some(first) = rx.blocking_recv() {
            let mut puts = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Put(p) => puts.push(p),
                    Command::DeleteTeam(team, reply) => {
                        // Puts queued before the deletion are written first.
                        self.write_round(std::mem::take(&mut puts));
                        let _ = reply.send(self.delete_team(&team));
                    }
                    Command::Close(reply) => closing = Some(reply),
                }
                if puts.len() < MAX_ROUND && closing.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            self.write_round(puts);
            self.seal_idle();
            if closing.is_some() {
                break;
            }
        }
        // Closed or dropped: seal everything, so a clean stop leaves nothing to settle.
        let teams: Vec<String> = self.open.keys().cloned().collect();
        for team in teams {
            self.seal(&team);
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    fn write_round(&mut self, puts: Vec<Put>) {
        if puts.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let mut by_team: HashMap<String, Vec<Put>> = HashMap::new();
        for p in puts {
            by_team.entry(p.team_id.clone()).or_default().push(p);
        }
        let mut written = Vec::new();
        for (team, puts) in by_team {
            match self.append(&team, &puts) {
                Ok(keys) => written.push((team, puts, keys)),
                Err(e) => {
                    // What was appended may be torn: never append to that segment again.
                    self.give_up(&team);
                    fail(puts, &e);
                }
            }
        }
        for (team, puts, keys) in written {
            let synced = match self.open.get(&team) {
                Some(segment) => segment.file.sync_data(),
                None => Err(io::Error::other("segment lost")),
            };
            match synced {
                Ok(()) => {
                    for (p, key) in puts.into_iter().zip(keys) {
                        let _ = p.reply.send(Ok(key));
                    }
                }
                Err(e) => {
                    // After a failed fsync the kernel may have dropped the pages.
                    self.give_up(&team);
                    fail(puts, &e);
                }
            }
        }
        metrics::histogram!("sendmux_blob_write_seconds").record(started.elapsed().as_secs_f64());
    }

    /// Appends the team's puts to its open segment; returns their keys. Bodies go out
    /// gathered in pieces of about [`WRITE_CHUNK`], so a round of large bodies is not
    /// copied into one buffer first.
    fn append(&mut self, team: &str, puts: &[Put]) -> io::Result<Vec<String>> {
        let full = self.open.get(team).is_some_and(|s| s.len >= SEGMENT_BYTES);
        if full {
            self.seal(team);
        }
        if !self.open.contains_key(team) {
            let segment = self.create(team)?;
            self.open_names.lock().insert(segment.name.clone());
            self.open.insert(team.to_owned(), segment);
        }
        let Some(segment) = self.open.get_mut(team) else { return Err(io::Error::other("segment lost")) };
        let mut keys = Vec::with_capacity(puts.len());
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_at = segment.len;
        for p in puts {
            let offset = buf_at + buf.len() as u64;
            keys.push(format!("{team}/{}:{offset}:{}", segment.name, p.bytes.len()));
            if p.bytes.len() >= WRITE_CHUNK {
                segment.file.write_all_at(&buf, buf_at)?;
                segment.file.write_all_at(&p.bytes, offset)?;
                buf.clear();
                buf_at = offset + align_up(p.bytes.len() as u64);
                continue;
            }
            buf.extend_from_slice(&p.bytes);
            buf.resize(align_up(buf.len() as u64) as usize, 0);
            if buf.len() >= WRITE_CHUNK {
                segment.file.write_all_at(&buf, buf_at)?;
                buf_at += buf.len() as u64;
                buf.clear();
            }
        }
        segment.file.write_all_at(&buf, buf_at)?;
        segment.len = buf_at + buf.len() as u64;
        segment.last_put = std::time::Instant::now();
        Ok(keys)
    }

    /// A new segment, locked, its name durable in the team's folder (and the folder's
    /// in the root, the first time this process writes for the team).
    fn create(&mut self, team: &str) -> io::Result<Segment> {
        let folder = self.paths.root.join(team);
        if !self.durable_folders.contains(team) {
            create_private_dir(&folder)?;
            File::open(&self.paths.root)?.sync_all()?;
            self.durable_folders.insert(team.to_owned());
        }
        let name = ulid::Ulid::new().to_string();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(folder.join(format!("{name}.open")))?;
        file.try_lock().map_err(|_| io::Error::other("cannot lock a new segment"))?;
        File::open(&folder)?.sync_all()?;
        Ok(Segment { name, file, len: 0, last_put: std::time::Instant::now() })
    }

    /// Stops appending to the team's segment and renames it sealed. Every byte in it
    /// was already flushed before its put was answered.
    fn seal(&mut self, team: &str) {
        let Some(segment) = self.open.remove(team) else { return };
        self.open_names.lock().remove(&segment.name);
        let from = self.paths.segment(team, &segment.name, false);
        if let Err(e) = std::fs::rename(&from, self.paths.segment(team, &segment.name, true)) {
            // Left open, the segment is settled later; nothing is lost.
            tracing::warn!(segment = %from.display(), error = %e, "could not seal a message body segment");
        }
    }

    /// Stops using the team's segment after an error, keeping it open and locked.
    fn give_up(&mut self, team: &str) {
        if let Some(segment) = self.open.remove(team) {
            self.failed.push(segment.file);
        }
    }

    fn seal_idle(&mut self) {
        let idle: Vec<String> =
            self.open.iter().filter(|(_, s)| s.last_put.elapsed() >= IDLE_SEAL).map(|(t, _)| t.clone()).collect();
        for team in idle {
            self.seal(&team);
        }
    }

    fn delete_team(&mut self, team: &str) -> io::Result<()> {
        if let Some(segment) = self.open.remove(team) {
            self.open_names.lock().remove(&segment.name);
        }
        self.durable_folders.remove(team);
        match std::fs::remove_dir_all(self.paths.root.join(team)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn fail(puts: Vec<Put>, e: &io::Error) {
    for p in puts {
        let _ = p.reply.send(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bytes(b: &[u8]) -> Arc<Vec<u8>> {
        Arc::new(b.to_vec())
    }

    /// The writer thread seals its segments as it ends, after the store is dropped.
    fn wait_sealed(folder: &Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_dir(folder).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".open")) {
            assert!(std::time::Instant::now() < deadline, "the segment was not sealed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn bodies_round_trip_and_deleting_one_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path().join("blobs")).unwrap();
        let a = b"Subject: x\r\n\r\n\0\xff body\n".to_vec();
        let b = vec![b'b'; 5000];
        // Larger than a write piece, between small ones in the same round.
        let big: Vec<u8> = (0..(WRITE_CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        let (ka, kbig, kb, kc) = tokio::join!(
            store.put("team_1", Arc::new(a.clone())),
            store.put("team_1", Arc::new(big.clone())),
            store.put("team_1", Arc::new(b.clone())),
            store.put("team_2", bytes(b""))
        );
        let (ka, kbig, kb, kc) = (ka.unwrap(), kbig.unwrap(), kb.unwrap(), kc.unwrap());
        assert_eq!(store.get(&ka).await.unwrap(), a);
        assert_eq!(store.get(&kbig).await.unwrap(), big);
        assert_eq!(store.get(&kb).await.unwrap(), b);
        assert_eq!(store.get(&kc).await.unwrap(), b"");
        assert!(ka.starts_with("team_1/") && kc.starts_with("team_2/"));

        store.delete(&ka).await.unwrap();
        store.delete(&ka).await.unwrap();
        assert_eq!(store.get(&ka).await.unwrap(), vec![0; a.len()], "a deleted body's bytes are gone");
        assert_eq!(store.get(&kb).await.unwrap(), b);

        for bad in ["../etc/passwd", "team_1/x:1:2", "team_1/../x:0:1", "team_1", "team_1/seg:0:1:2", "a/b/c"] {
            assert!(store.get(bad).await.is_err(), "{bad}");
        }
        assert!(store.put("../x", bytes(b"x")).await.is_err());
    }

    #[tokio::test]
    async fn a_sealed_segment_goes_once_every_body_in_it_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let store = FsBlobStore::new(&root).unwrap();
        let ka = store.put("team_1", bytes(&[1; 6000])).await.unwrap();
        let kb = store.put("team_1", bytes(&[2; 100])).await.unwrap();
        let empty = store.put("team_1", bytes(b"")).await.unwrap();
        store.close().await;
        let folder = root.join("team_1");
        assert!(
            std::fs::read_dir(&folder).unwrap().all(|e| e.unwrap().file_name().to_string_lossy().ends_with(".seg")),
            "closing seals"
        );
        assert!(store.put("team_1", bytes(b"late")).await.is_err(), "closed: no more puts");
        let sealed = || std::fs::read_dir(&folder).unwrap().filter_map(|e| e.ok()).count();
        let store = FsBlobStore::new(&root).unwrap();
        assert_eq!(store.get(&kb).await.unwrap(), vec![2; 100]);
        store.delete(&ka).await.unwrap();
        assert_eq!(sealed(), 1, "a body is left");
        store.delete(&kb).await.unwrap();
        assert_eq!(sealed(), 0, "nothing is left in the segment");
        assert_eq!(store.get(&empty).await.unwrap(), b"", "an empty body needs no segment");
    }

    #[tokio::test]
    async fn deleting_a_team_removes_its_bodies_and_later_puts_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let store = FsBlobStore::new(&root).unwrap();
        let k = store.put("team_1", bytes(b"one")).await.unwrap();
        let other = store.put("team_2", bytes(b"two")).await.unwrap();
        store.delete_team("team_1").await.unwrap();
        assert!(!root.join("team_1").exists());
        assert!(store.get(&k).await.is_err());
        assert_eq!(store.get(&other).await.unwrap(), b"two");
        let again = store.put("team_1", bytes(b"three")).await.unwrap();
        assert_eq!(store.get(&again).await.unwrap(), b"three");
    }

    #[tokio::test]
    async fn an_abandoned_segment_keeps_only_what_is_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        // A writer that died: its segment is still `.open` and unlocked.
        let store = FsBlobStore::new(&root).unwrap();
        let kept = store.put("team_1", bytes(&[7; 5000])).await.unwrap();
        let orphan = store.put("team_1", bytes(&[8; 5000])).await.unwrap();
        let Key::Range { segment, .. } = parse_key(&kept).unwrap() else { panic!() };
        let segment = segment.to_owned();
        let open = root.join("team_1").join(format!("{segment}.open"));
        let copy = root.join("team_1").join("copy");
        std::fs::copy(&open, &copy).unwrap();
        drop(store);
        wait_sealed(&root.join("team_1"));
        let _ = std::fs::remove_file(root.join("team_1").join(format!("{segment}.seg")));
        std::fs::rename(&copy, &open).unwrap();
        let old = SystemTime::now() - Duration::from_secs(120);
        File::options().write(true).open(&open).unwrap().set_modified(old).unwrap();

        let store = FsBlobStore::new(&root).unwrap();
        let found = store.abandoned().await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].team_id, "team_1");
        assert!(kept.starts_with(&found[0].key_prefix));
        // A live writer's lock keeps it out.
        let held = File::open(&open).unwrap();
        held.lock().unwrap();
        assert!(store.abandoned().await.unwrap().is_empty());
        drop(held);

        assert_eq!(store.settle(&found[0], std::slice::from_ref(&kept)).await.unwrap(), 1);
        assert_eq!(store.get(&kept).await.unwrap(), vec![7; 5000]);
        assert_eq!(store.get(&orphan).await.unwrap(), vec![0; 5000], "the unreferenced body is erased");
        assert!(root.join("team_1").join(format!("{segment}.seg")).exists(), "settled segments are sealed");
        assert!(store.abandoned().await.unwrap().is_empty());
    }

    #[test]
    fn keys_parse_strictly() {
        assert_eq!(
            parse_key("team_1/01ABC:4096:10").unwrap(),
            Key::Range { team: "team_1", segment: "01ABC", offset: 4096, len: 10 }
        );
        assert_eq!(parse_key("team_1/msg_1").unwrap(), Key::File { team: "team_1", message: "msg_1" });
        for bad in [
            "team_1/01ABC:100:10",
            "team_1/01ABC:x:1",
            "/01ABC:0:1",
            "team_1/",
            "team.1/msg",
            "team_1/01ABC:0:9999999999999",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }
}
