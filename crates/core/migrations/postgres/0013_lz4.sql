-- The large text of the hot write paths compresses with LZ4 instead of pglz: a message's
-- request, text and search words, and the event payloads, are compressed on the
-- committing connection, and pglz took 3-5 % of the database's CPU under load (see
-- docs/PERFORMANCE.md). Existing values stay as they are; new ones use LZ4.
-- PostgreSQL before 14, or built without LZ4, keeps pglz.
DO $$
BEGIN
    ALTER TABLE outbound_messages ALTER COLUMN request SET COMPRESSION lz4;
    ALTER TABLE inbound_messages ALTER COLUMN extracted_text SET COMPRESSION lz4;
    ALTER TABLE inbound_messages ALTER COLUMN search_text SET COMPRESSION lz4;
    ALTER TABLE inbound_messages ALTER COLUMN auth_results SET COMPRESSION lz4;
    ALTER TABLE events ALTER COLUMN payload SET COMPRESSION lz4;
    ALTER TABLE webhook_deliveries ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
    RAISE NOTICE 'LZ4 is not available here: large text keeps pglz';
END $$;
