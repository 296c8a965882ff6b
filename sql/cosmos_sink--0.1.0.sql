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
