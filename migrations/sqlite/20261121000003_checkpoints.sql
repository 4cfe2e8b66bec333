-- Aggregator checkpoints shared by the aggregator instances of a consumer group (see the
-- Postgres migration of the same name for the epoch fencing).
CREATE TABLE IF NOT EXISTS aggregator_checkpoints (
    group_id    TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    epoch       INTEGER NOT NULL DEFAULT 0,
    offsets     TEXT    NOT NULL DEFAULT '{}',
    snapshot    BLOB,
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (group_id, partition)
);
