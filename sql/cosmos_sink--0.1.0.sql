-- cosmos_sink 0.1.0: route registry and its functions
\echo Use "CREATE EXTENSION cosmos_sink" to load this file. \quit

-- Functions are granted one by one; the schema itself is visible to all
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- One row per routed staging table. A user catalog table, so that the output
-- plugin can read it under the decoding snapshot: a route takes effect at the
-- LSN of the transaction that added it. Column order is fixed (src/route.h).
CREATE TABLE routes (
    route_id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staging_table   regclass NOT NULL UNIQUE,
    cosmos_database text NOT NULL,
    container       text NOT NULL,
    partition_key   text[] NOT NULL,
    id_column       name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
) WITH (user_catalog_table = true);
SELECT pg_catalog.pg_extension_config_dump('routes', '');
REVOKE ALL ON routes FROM PUBLIC;
GRANT SELECT ON routes TO pg_monitor;

CREATE FUNCTION add_route(staging_table regclass,
                          cosmos_database text,
                          container text,
                          partition_key text[],
                          id_column name DEFAULT NULL)
RETURNS routes
AS 'MODULE_PATHNAME', 'add_route' LANGUAGE C;

-- partition_key => 'col' (or '{a,b}') resolves here: unknown literals prefer text
CREATE FUNCTION add_route(staging_table regclass,
                          cosmos_database text,
                          container text,
                          partition_key text,
                          id_column name DEFAULT NULL)
RETURNS routes
AS 'MODULE_PATHNAME', 'add_route_text' LANGUAGE C;

CREATE FUNCTION remove_route(staging_table regclass)
RETURNS routes
AS 'MODULE_PATHNAME', 'remove_route' LANGUAGE C STRICT;

REVOKE ALL ON FUNCTION add_route(regclass, text, text, text[], name) FROM PUBLIC;
REVOKE ALL ON FUNCTION add_route(regclass, text, text, text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION remove_route(regclass) FROM PUBLIC;

-- Shows a binary change record (format 'binary', the worker's format) as JSON
CREATE FUNCTION decode_record(record bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'decode_record' LANGUAGE C STRICT IMMUTABLE;

-- Records Cosmos DB refused for good, or that could not become documents.
-- Their place in the stream is passed; fix the cause, then retry_dead_letters().
CREATE TABLE dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    staging_table regclass,
    lsn           pg_lsn NOT NULL,
    operation     text NOT NULL CHECK (operation IN ('upsert', 'delete', 'error')),
    doc_id        text,
    partition_key jsonb,
    document      jsonb,
    http_status   integer,
    sub_status    integer,
    error         text NOT NULL,
    retried_at    timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('dead_letters', '');
REVOKE ALL ON dead_letters FROM PUBLIC;
GRANT SELECT ON dead_letters TO pg_monitor;

-- The worker's shared state (one row); the status view adds the slot's view
CREATE FUNCTION worker_status(OUT state text, OUT worker_pid integer,
                              OUT decoded_lsn pg_lsn, OUT oldest_unacked_commit timestamptz,
                              OUT last_ack_at timestamptz, OUT in_flight_requests integer,
                              OUT last_error text, OUT last_error_at timestamptz,
                              OUT paused boolean, OUT slot_name text)
RETURNS record
AS 'MODULE_PATHNAME', 'worker_status' LANGUAGE C;

CREATE VIEW status AS
SELECT w.state,
       w.worker_pid,
       w.slot_name,
       s.confirmed_flush_lsn AS confirmed_lsn,
       pg_catalog.pg_current_wal_lsn() AS current_lsn,
       COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
                                           s.confirmed_flush_lsn), 0)::bigint AS lag_bytes,
       COALESCE(extract(epoch FROM pg_catalog.now() - w.oldest_unacked_commit), 0)::float8
         AS lag_seconds,
       w.last_ack_at,
       w.in_flight_requests,
       s.wal_status,
       s.safe_wal_size,
       w.last_error,
       w.last_error_at
  FROM worker_status() w
  LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = w.slot_name;

CREATE FUNCTION pause() RETURNS void
AS 'MODULE_PATHNAME', 'pause_forwarding' LANGUAGE C;
CREATE FUNCTION resume() RETURNS void
AS 'MODULE_PATHNAME', 'resume_forwarding' LANGUAGE C;

REVOKE ALL ON FUNCTION pause() FROM PUBLIC;
REVOKE ALL ON FUNCTION resume() FROM PUBLIC;
GRANT SELECT ON status TO pg_monitor;

-- Per-route counters kept by the worker in shared memory
CREATE FUNCTION container_stats_internal(OUT route_id integer, OUT upserts bigint,
    OUT deletes bigint, OUT requests bigint, OUT throttled bigint, OUT retries bigint,
    OUT dead_lettered bigint, OUT ru_total numeric, OUT ru_per_second float8,
    OUT avg_batch_ops float8, OUT p50_ms float8, OUT p99_ms float8,
    OUT last_ack_at timestamptz, OUT stats_reset timestamptz, OUT relid oid,
    OUT truncates bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'container_stats_internal' LANGUAGE C;

CREATE VIEW container_stats AS
SELECT r.staging_table,
       r.cosmos_database,
       r.container,
       COALESCE(s.upserts, 0) AS upserts,
       COALESCE(s.deletes, 0) AS deletes,
       COALESCE(s.requests, 0) AS requests,
       COALESCE(s.throttled, 0) AS throttled,
       COALESCE(s.retries, 0) AS retries,
       COALESCE(s.dead_lettered, 0) AS dead_lettered,
       COALESCE(s.ru_total, 0) AS ru_total,
       COALESCE(s.ru_per_second, 0) AS ru_per_second,
       COALESCE(s.avg_batch_ops, 0) AS avg_batch_ops,
       COALESCE(s.p50_ms, 0) AS p50_ms,
       COALESCE(s.p99_ms, 0) AS p99_ms,
       s.last_ack_at,
       s.stats_reset,
       COALESCE(s.truncates, 0) AS truncates
  FROM routes r
  LEFT JOIN container_stats_internal() s ON s.route_id = r.route_id;

CREATE FUNCTION reset_stats() RETURNS void
AS 'MODULE_PATHNAME', 'reset_stats' LANGUAGE C;
REVOKE ALL ON FUNCTION reset_stats() FROM PUBLIC;
GRANT SELECT ON container_stats TO pg_monitor;

-- Re-sends parked records from the current state of their staging rows: a row
-- that still exists is touched (its UPDATE carries the newest document); a row
-- that is gone gets its delete re-sent, in commit order, through a
-- transactional logical message. Returns how many records were re-sent.
CREATE FUNCTION retry_dead_letters(staging_table regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rt record;
    dl record;
    id_type text;
    touched bigint;
    n bigint := 0;
BEGIN
    FOR rt IN SELECT r.staging_table AS tbl, r.id_column
                FROM @extschema@.routes r
               WHERE retry_dead_letters.staging_table IS NULL
                  OR r.staging_table = retry_dead_letters.staging_table
    LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO id_type
          FROM pg_attribute a WHERE a.attrelid = rt.tbl AND a.attname = rt.id_column;
        FOR dl IN SELECT d.id, d.doc_id, d.partition_key
                    FROM @extschema@.dead_letters d
                   WHERE d.staging_table = rt.tbl AND d.retried_at IS NULL AND d.doc_id IS NOT NULL
                   ORDER BY d.id
                     FOR UPDATE
        LOOP
            EXECUTE format('UPDATE %s SET %I = %I WHERE %I = $1::%s',
                           rt.tbl, rt.id_column, rt.id_column, rt.id_column, id_type)
              USING dl.doc_id;
            GET DIAGNOSTICS touched = ROW_COUNT;
            IF touched = 0 AND jsonb_typeof(dl.partition_key) = 'array' THEN
                PERFORM pg_logical_emit_message(true, 'cosmos_sink',
                    concat_ws(E'\n', 'delete', rt.tbl::oid::text,
                              '[' || (SELECT string_agg(e::text, ',' ORDER BY o)
                                        FROM jsonb_array_elements(dl.partition_key)
                                             WITH ORDINALITY AS x(e, o)) || ']',
                              dl.doc_id));
            END IF;
            UPDATE @extschema@.dead_letters SET retried_at = now() WHERE id = dl.id;
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION retry_dead_letters(regclass) FROM PUBLIC;
