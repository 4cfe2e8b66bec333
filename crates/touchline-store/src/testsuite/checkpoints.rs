//! The [`CheckpointTable`] checks.

use uuid::Uuid;

use crate::{CheckpointTable, StoredCheckpoint};

/// Shared aggregator checkpoints: epochs grow per take-over, a save under a superseded epoch
/// is refused and leaves the newer owner's checkpoint alone, clear keeps the epoch.
pub async fn checkpoints_fence_old_owners(store: &dyn CheckpointTable) {
    let g = format!("g-{}", Uuid::new_v4());
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), None);
    let first = store.checkpoint_acquire(&g, 3).await.expect("checkpoint call");
    let second = store.checkpoint_acquire(&g, 3).await.expect("checkpoint call");
    assert_eq!(second, first + 1);
    assert_eq!(store.checkpoint_acquire(&g, 4).await.expect("checkpoint call"), 1, "epochs are per partition");
    let newer = StoredCheckpoint { epoch: second, offsets_json: r#"{"touchline.events":7}"#.into(), snapshot: vec![0, 1, 2, 255] };
    assert!(store.checkpoint_save(&g, 3, newer.epoch, &newer.offsets_json, &newer.snapshot).await.expect("checkpoint call"));
    let stale = StoredCheckpoint { epoch: first, offsets_json: "{}".into(), snapshot: vec![9] };
    assert!(
        !store.checkpoint_save(&g, 3, stale.epoch, &stale.offsets_json, &stale.snapshot).await.expect("checkpoint call"),
        "a fenced owner must not overwrite"
    );
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), Some(newer));
    assert_eq!(store.checkpoint_load(&g, 4).await.expect("checkpoint call"), None, "acquired but never saved");
    assert!(store.checkpoint_clear(&g).await.expect("checkpoint call") >= 1);
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), None);
    assert_eq!(store.checkpoint_acquire(&g, 3).await.expect("checkpoint call"), second + 1, "clear keeps epochs");
}
