//! Group commit: how committers gather a group from their queue. Where they run and
//! how many there are is `store::writer::BatchConn`'s.

use tokio::sync::{Mutex, mpsc};

/// `first` and every job waiting behind it on `rx`, at most `max`: one group.
fn drain<J>(first: J, rx: &mut mpsc::Receiver<J>, max: usize) -> Vec<J> {
    let mut group = vec![first];
    while group.len() < max {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    group
}

/// The queue that several committers of one kind take their groups from: a free
/// committer waits for the next job and takes it with every job waiting behind it. While
/// all of them are writing, jobs pile up, so groups grow with the load.
pub struct Groups<J> {
    rx: Mutex<mpsc::Receiver<J>>,
    max: usize,
}

impl<J> Groups<J> {
    pub fn new(rx: mpsc::Receiver<J>, max: usize) -> Self {
        Groups { rx: Mutex::new(rx), max }
    }

    /// The next group, at most `max` jobs; None once every sender is gone.
    pub async fn next(&self) -> Option<Vec<J>> {
        let mut rx = self.rx.lock().await;
        let first = rx.recv().await?;
        Some(drain(first, &mut rx, self.max))
    }
}
