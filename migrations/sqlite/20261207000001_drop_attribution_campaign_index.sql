-- Every attribution row written paid for this index (about a third of SQLite's time per row),
-- and no read of the embedded store uses it: reads select an account's rows by model, through
-- the unique key's account prefix. Postgres keeps its copy.
DROP INDEX IF EXISTS campaign_attributions_campaign;
