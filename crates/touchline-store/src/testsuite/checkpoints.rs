//! The [`CheckpointTable`] checks.

use uuid::Uuid;

use crate::{CheckpointTable, CheckpointWrite, StoredCheckpoint};

fn write(c: &StoredCheckpoint) -> CheckpointWrite<'_> {
    CheckpointWrite { epoch: c.epoch, offsets_json: &c.offsets_json, snapshot: &c.snapshot, replay_json: c.replay_json.as_deref() }
}

/// Shared aggregator checkpoints: epochs grow per take-over, a save under a superseded epoch
/// is refused and leaves the newer owner's checkpoint alone, clear keeps the epoch.
pub async fn checkpoints_fence_old_owners(store: &dyn CheckpointTable) {
    let g = format!("g-{}", Uuid::new_v4());
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), None);
    let first = store.checkpoint_acquire(&g, 3).await.expect("checkpoint call");
    let second = store.checkpoint_acquire(&g, 3).await.expect("checkpoint call");
    assert_eq!(second, first + 1);
    assert_eq!(store.checkpoint_acquire(&g, 4).await.expect("checkpoint call"), 1, "epochs are per partition");
    let newer = StoredCheckpoint {
        epoch: second,
        offsets_json: r#"{"touchline.events":7}"#.into(),
        snapshot: vec![0, 1, 2, 255],
        replay_json: None,
    };
    assert!(store.checkpoint_save(&g, 3, write(&newer)).await.expect("checkpoint call"));
    let stale = StoredCheckpoint { epoch: first, offsets_json: "{}".into(), snapshot: vec![9], replay_json: None };
    assert!(!store.checkpoint_save(&g, 3, write(&stale)).await.expect("checkpoint call"), "a fenced owner must not overwrite");
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), Some(newer));
    assert_eq!(store.checkpoint_load(&g, 4).await.expect("checkpoint call"), None, "acquired but never saved");
    assert!(store.checkpoint_clear(&g).await.expect("checkpoint call") >= 1);
    assert_eq!(store.checkpoint_load(&g, 3).await.expect("checkpoint call"), None);
    assert_eq!(store.checkpoint_acquire(&g, 3).await.expect("checkpoint call"), second + 1, "clear keeps epochs");
}

/// Base snapshots: a checkpoint naming a base (an empty snapshot and a replay) reads back as
/// written; bases are per partition; an owner whose epoch was superseded can neither add a
/// base nor remove one; the current owner removes all but the one its checkpoint names;
/// clear removes them all.
pub async fn base_snapshots_are_fenced_by_epoch(store: &dyn CheckpointTable) {
    let g = format!("g-{}", Uuid::new_v4());
    let old = store.checkpoint_acquire(&g, 0).await.expect("acquire");
    store.checkpoint_acquire(&g, 1).await.expect("acquire");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert!(store.checkpoint_save_base(&g, 0, old, "e1-0", &big).await.expect("save base"));
    assert!(store.checkpoint_save_base(&g, 0, old, "e1-10", b"second").await.expect("save base"));
    assert_eq!(store.checkpoint_load_base(&g, 0, "e1-0").await.expect("load base"), Some(big.clone()));
    assert_eq!(store.checkpoint_load_base(&g, 1, "e1-0").await.expect("load base"), None, "bases are per partition");
    assert_eq!(store.checkpoint_load_base(&g, 0, "nope").await.expect("load base"), None);
    let on_base = StoredCheckpoint {
        epoch: old,
        offsets_json: r#"{"touchline.events":12}"#.into(),
        snapshot: Vec::new(),
        replay_json: Some(r#"{"base":"e1-10","flushes":[]}"#.into()),
    };
    assert!(store.checkpoint_save(&g, 0, write(&on_base)).await.expect("save"));
    assert_eq!(store.checkpoint_load(&g, 0).await.expect("load"), Some(on_base.clone()));

    // A new owner takes the partition: the old one is fenced off the bases too.
    let new = store.checkpoint_acquire(&g, 0).await.expect("acquire");
    assert!(!store.checkpoint_save_base(&g, 0, old, "e1-20", b"late").await.expect("stale save"), "a fenced owner adds no base");
    assert_eq!(store.checkpoint_load_base(&g, 0, "e1-20").await.expect("load base"), None);
    assert!(!store.checkpoint_remove_bases_except(&g, 0, old, "e1-0").await.expect("stale removal"), "a fenced owner removes nothing");
    assert_eq!(store.checkpoint_load_base(&g, 0, "e1-10").await.expect("load base"), Some(b"second".to_vec()), "still there");
    assert!(store.checkpoint_save_base(&g, 0, new, "e2-30", b"third").await.expect("save base"));
    assert!(store.checkpoint_remove_bases_except(&g, 0, new, "e2-30").await.expect("removal"));
    for gone in ["e1-0", "e1-10"] {
        assert_eq!(store.checkpoint_load_base(&g, 0, gone).await.expect("load base"), None, "{gone} removed");
    }
    assert_eq!(store.checkpoint_load_base(&g, 0, "e2-30").await.expect("load base"), Some(b"third".to_vec()));
    store.checkpoint_clear(&g).await.expect("clear");
    assert_eq!(store.checkpoint_load_base(&g, 0, "e2-30").await.expect("load base"), None, "clear removes bases");
    assert_eq!(store.checkpoint_load(&g, 0).await.expect("load"), None);
}
