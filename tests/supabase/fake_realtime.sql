-- Test-only: capture changes of every table in the supabase_realtime
-- publication into an outbox that tests/supabase/fake_realtime.py polls in
-- commit order, standing in for Realtime's WAL reader. Idempotent.
CREATE SCHEMA IF NOT EXISTS flowbot_test;
CREATE TABLE IF NOT EXISTS flowbot_test.outbox (
    id bigserial PRIMARY KEY,
    tbl text NOT NULL,
    op text NOT NULL,
    rec jsonb,
    old jsonb,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION flowbot_test.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO flowbot_test.outbox (tbl, op, rec, old)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END);
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_publication_tables
             WHERE pubname = 'supabase_realtime' AND schemaname = 'public'
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS zz_fake_realtime ON public.%I', t);
        EXECUTE format('CREATE TRIGGER zz_fake_realtime AFTER INSERT OR UPDATE OR DELETE '
                       'ON public.%I FOR EACH ROW EXECUTE FUNCTION flowbot_test.capture()', t);
    END LOOP;
END
$$;
