-- Base snapshots of the aggregator partitions, beside their checkpoints (see the Postgres
-- migration of the same name).
ALTER TABLE aggregator_checkpoints ADD COLUMN replay TEXT;

CREATE TABLE IF NOT EXISTS aggregator_checkpoint_bases (
    group_id    TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    snapshot    BLOB    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (group_id, partition, name)
);
