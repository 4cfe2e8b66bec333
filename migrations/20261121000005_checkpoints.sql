-- Aggregator checkpoints shared by every aggregator instance of a consumer group. With Kafka,
-- partitions move between instances on rebalance, so a partition's engine snapshot and the
-- offsets it covers must be readable by whichever instance owns it next. `epoch` is bumped
-- when an instance takes a partition; a save only succeeds while the saver's epoch is the
-- current one, so an instance that lost the partition (paused, partitioned away) cannot
-- overwrite its successor's checkpoint. Not account data: no row-level security, and the
-- application role has no access (the aggregator connects as the owner role).
CREATE TABLE IF NOT EXISTS aggregator_checkpoints (
    group_id    text    NOT NULL,
    partition   integer NOT NULL,
    epoch       bigint  NOT NULL DEFAULT 0,
    offsets     text    NOT NULL DEFAULT '{}',
    snapshot    bytea,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, partition)
);
