//! Group commit: the committers' threads and how a group is gathered from their queue.

/// Starts a group committer — the loop everything else waits on — on a thread of its
/// own. On SQLite the committers run there with a connection of their own
/// (`store::writer::Direct`), so nothing they do waits for the runtime or another thread.
pub fn spawn_thread(name: &str, run: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new().name(name.to_owned()).spawn(run)?;
    Ok(())
}

/// `first` and every job waiting behind it on `rx`, at most `max`: one group.
pub fn drain<J>(first: J, rx: &mut tokio::sync::mpsc::Receiver<J>, max: usize) -> Vec<J> {
    let mut group = vec![first];
    while group.len() < max {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    group
}
