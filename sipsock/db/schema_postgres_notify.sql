-- NOTIFY on every change of the sockets table, for [sockets_mgm] auto_reload.
-- Installed by "sipsock-db init --notify"; idempotent. One notification per
-- statement (FOR EACH STATEMENT), and PostgreSQL folds equal notifications of
-- one transaction into one, so a bulk change wakes the daemons once or twice.
-- The payload is the operation (INSERT, UPDATE, DELETE, TRUNCATE).
-- Remove with: DROP TRIGGER $trigger ON $table; DROP FUNCTION $function();
CREATE OR REPLACE FUNCTION $function() RETURNS trigger LANGUAGE plpgsql AS $$$$
BEGIN
    PERFORM pg_notify('$channel', TG_OP);
    RETURN NULL;
END;
$$$$;

DROP TRIGGER IF EXISTS $trigger ON $table;

CREATE TRIGGER $trigger
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON $table
    FOR EACH STATEMENT EXECUTE PROCEDURE $function();
