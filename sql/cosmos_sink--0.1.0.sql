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
