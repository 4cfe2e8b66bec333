-- Base snapshots of the aggregator partitions, beside their checkpoints. A checkpoint holds
-- either the whole engine state (`snapshot`) or a replay (`replay`, JSON): the name of a base
-- here and the offsets of every flush since, which the next owner feeds again on top of the
-- base. So the checkpoints between two bases write a few hundred bytes instead of the whole
-- state. A base is written, and the bases a checkpoint no longer needs are removed, only
-- under the partition's current epoch (checked with its checkpoint row locked), so an
-- instance that lost the partition cannot remove a base its successor restores from.
ALTER TABLE aggregator_checkpoints ADD COLUMN IF NOT EXISTS replay text;

CREATE TABLE IF NOT EXISTS aggregator_checkpoint_bases (
    group_id    text    NOT NULL,
    partition   integer NOT NULL,
    name        text    NOT NULL,
    epoch       bigint  NOT NULL,
    snapshot    bytea   NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, partition, name)
);
