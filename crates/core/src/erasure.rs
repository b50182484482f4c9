//! Erasing the bodies of deleted messages once their deletion committed; what fails
//! stays queued in `blob_erasures` for maintenance to retry.

use crate::Storage;

/// Erases the bodies named by `keys` (queued in `blob_erasures` by the transaction that
/// deleted their rows), then forgets the keys. A key `<team_id>/` stands for every body
/// of a deleted team. What fails stays queued for maintenance, and is only logged here:
/// the deletion itself has committed.
pub async fn erase_bodies(state: &Storage, keys: &[String]) {
    if let Err(e) = try_erase_bodies(state, keys).await {
        tracing::warn!(error = %format!("{e:#}"), "erasing deleted message bodies failed; maintenance will retry");
    }
}

pub(crate) async fn try_erase_bodies(state: &Storage, keys: &[String]) -> anyhow::Result<()> {
    let mut erased = Vec::with_capacity(keys.len());
    for key in keys {
        let result = match key.strip_suffix('/') {
            Some(team) => state.blobs.delete_team(team).await,
            None => state.blobs.delete(key).await,
        };
        match result {
            Ok(()) => erased.push(key.clone()),
            Err(e) => tracing::warn!(key = %key, error = %e, "could not erase a message body; will retry"),
        }
    }
    let mut conn = state.store.write_conn().await?;
    crate::store::erasures::done(&mut conn, state.store.backend(), &erased).await?;
    Ok(())
}
