-- Row-level security, as seed 000 describes: every account-scoped table is visible only for the
-- account set with `SET LOCAL app.current_account_id`. touchline writes through the role
-- touchline_app, which is neither a superuser nor the owner of the tables (both would bypass
-- the policies).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'touchline_app') THEN
        BEGIN
            CREATE ROLE touchline_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently by a migration of another database
        END;
    END IF;
    -- The connecting role must be able to SET ROLE touchline_app.
    IF NOT pg_has_role(current_user, 'touchline_app', 'MEMBER') THEN
        EXECUTE format('GRANT touchline_app TO %I', current_user);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION touchline_current_account() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('app.current_account_id', true), '')::uuid
$$;

GRANT USAGE ON SCHEMA public TO touchline_app;
GRANT SELECT ON accounts, api_keys, catalog_version TO touchline_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON marketing_campaigns, advertisements, links,
    campaign_performance_metrics, campaign_attributions TO touchline_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO touchline_app;
GRANT EXECUTE ON FUNCTION touchline_current_account() TO touchline_app;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['marketing_campaigns', 'advertisements', 'links', 'api_keys',
                             'campaign_performance_metrics', 'campaign_attributions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS %I ON %I', t || '_account_isolation', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR ALL TO touchline_app
                        USING (account_id = touchline_current_account())
                        WITH CHECK (account_id = touchline_current_account())', t || '_account_isolation', t);
    END LOOP;
    ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS accounts_account_isolation ON accounts;
    CREATE POLICY accounts_account_isolation ON accounts FOR ALL TO touchline_app
        USING (id = touchline_current_account()) WITH CHECK (id = touchline_current_account());
END;
$$;
