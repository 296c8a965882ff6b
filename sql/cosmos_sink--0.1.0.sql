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
