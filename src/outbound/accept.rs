//! Group commit for accepted mail. Every `POST /emails` must be durable before its 202,
//! and on SQLite each commit is an fsync under one write lock; committing requests one
//! by one caps acceptance at the disk's fsync rate. Handlers validate in parallel and
//! hand their writes to a committer task, which runs every request waiting at that
//! moment in one transaction (each inside its own savepoint, so one request's error
//! rolls back only its own writes) and answers each after the commit.

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, ApiResult};
use crate::store::{Store, Tx};

/// One request's writes; returns its answer.
pub type Work<T> = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, ApiResult<T>> + Send>;

type Job<T> = (Work<T>, oneshot::Sender<ApiResult<T>>);

pub struct Committer<T> {
    sender: mpsc::Sender<Job<T>>,
}

/// Most requests committed together.
const MAX_GROUP: usize = 256;

impl<T: Send + 'static> Committer<T> {
    /// Starts the committer task. One: SQLite has one writer anyway, and on PostgreSQL
    /// parallel groups could deadlock on each other's idempotency rows and per-team event
    /// locks, taken in different orders.
    pub fn start(store: Store) -> Self {
        let (sender, mut rx) = mpsc::channel::<Job<T>>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                run_group(&store, jobs).await;
            }
        });
        Self { sender }
    }

    /// Runs `work` in the next group and returns its answer once the group committed.
    pub async fn run(&self, work: Work<T>) -> ApiResult<T> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((work, reply)).await.map_err(|_| ApiError::internal("the committer stopped"))?;
        answer.await.map_err(|_| ApiError::internal("the committer dropped a request"))?
    }
}

async fn run_group<T>(store: &Store, jobs: Vec<Job<T>>) {
    let mut tx = match store.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let msg = format!("beginning a transaction: {e}");
            for (_, reply) in jobs {
                let _ = reply.send(Err(ApiError::internal(&msg)));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(jobs.len());
    for (work, reply) in jobs {
        let answer = match sqlx::query("SAVEPOINT accept_one").execute(&mut *tx).await {
            Err(e) => Err(ApiError::from(e)),
            Ok(_) => {
                let answer = work(&mut tx).await;
                let end =
                    if answer.is_ok() { "RELEASE SAVEPOINT accept_one" } else { "ROLLBACK TO SAVEPOINT accept_one" };
                match sqlx::query(end).execute(&mut *tx).await {
                    Ok(_) if answer.is_err() => sqlx::query("RELEASE SAVEPOINT accept_one")
                        .execute(&mut *tx)
                        .await
                        .map(|_| answer)
                        .unwrap_or_else(|e| Err(e.into())),
                    Ok(_) => answer,
                    Err(e) => Err(e.into()),
                }
            }
        };
        answers.push((reply, answer));
    }
    match tx.commit().await {
        Ok(()) => {
            for (reply, answer) in answers {
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            let msg = format!("committing accepted mail: {e}");
            for (reply, answer) in answers {
                // Answers that were errors stay what they were; successes were not kept.
                let _ = reply.send(answer.and_then(|_| Err(ApiError::internal(&msg))));
            }
        }
    }
}
