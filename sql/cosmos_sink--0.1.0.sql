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
    created_at      timestamptz NOT NULL DEFAULT now(),
    key_types       text[]          -- types of the id and partition key columns, as routed
) WITH (user_catalog_table = true);
SELECT pg_catalog.pg_extension_config_dump('routes', '');

-- Route ids start above every id this server's worker may still know (after
-- DROP EXTENSION and CREATE EXTENSION while it runs): it keeps routes by id
CREATE FUNCTION route_id_floor() RETURNS integer
AS 'MODULE_PATHNAME', 'route_id_floor' LANGUAGE C;
REVOKE ALL ON FUNCTION route_id_floor() FROM PUBLIC;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('@extschema@.routes', 'route_id'),
                         @extschema@.route_id_floor(), false);
REVOKE ALL ON routes FROM PUBLIC;
GRANT SELECT ON routes TO pg_monitor;

-- How far the worker may confirm its slot: it records a position here (and
-- flushes it) before it confirms the slot past it. A slot that is missing
-- while a position is recorded, or that starts past it, is not the one the
-- routes' changes were kept in: the worker stops until recover().
CREATE TABLE slot_checkpoint (
    slot_name     name PRIMARY KEY,
    confirm_limit pg_lsn NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('slot_checkpoint', '');
REVOKE ALL ON slot_checkpoint FROM PUBLIC;
GRANT SELECT ON slot_checkpoint TO pg_monitor;

CREATE FUNCTION add_route(staging_table regclass,
                          cosmos_database text,
                          container text,
                          partition_key text[],
                          id_column name DEFAULT NULL)
RETURNS routes
AS 'MODULE_PATHNAME', 'add_route' LANGUAGE C
SET search_path = pg_catalog, pg_temp;

-- partition_key => 'col' (or '{a,b}') resolves here: unknown literals prefer text
CREATE FUNCTION add_route(staging_table regclass,
                          cosmos_database text,
                          container text,
                          partition_key text,
                          id_column name DEFAULT NULL)
RETURNS routes
AS 'MODULE_PATHNAME', 'add_route_text' LANGUAGE C
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION remove_route(staging_table regclass)
RETURNS routes
AS 'MODULE_PATHNAME', 'remove_route' LANGUAGE C STRICT
SET search_path = pg_catalog, pg_temp;

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
    retried_at    timestamptz,
    retry_error   text            -- why the last retry_dead_letters() could not re-send it
);
SELECT pg_catalog.pg_extension_config_dump('dead_letters', '');
REVOKE ALL ON dead_letters FROM PUBLIC;

-- Whether the current role may read every row of a table as it stands: a
-- member of its owner, or a reader whom no row-level security policy limits.
-- A dead letter holds a row's data, so it is shown only to such roles.
CREATE FUNCTION can_read_rows(tbl regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT pg_has_role(c.relowner, 'USAGE')
                            OR (has_table_privilege(c.oid, 'SELECT')
                                AND (NOT c.relrowsecurity
                                     OR (SELECT r.rolbypassrls FROM pg_roles r
                                          WHERE r.rolname = current_user)))
                       FROM pg_class c WHERE c.oid = tbl), false)
$$;
GRANT EXECUTE ON FUNCTION can_read_rows(regclass) TO PUBLIC;

-- A dead letter holds a row's data: the table itself is the extension
-- owner's; pg_monitor sees how many wait per table, and the dead letters of
-- the tables it may read in full.
CREATE VIEW dead_letter_counts AS
SELECT staging_table,
       count(*) FILTER (WHERE retried_at IS NULL) AS waiting,
       count(*) AS total,
       min(failed_at) FILTER (WHERE retried_at IS NULL) AS oldest_waiting
  FROM dead_letters
 GROUP BY staging_table;
GRANT SELECT ON dead_letter_counts TO pg_monitor;

CREATE VIEW readable_dead_letters WITH (security_barrier) AS
SELECT * FROM dead_letters WHERE @extschema@.can_read_rows(staging_table);
GRANT SELECT ON readable_dead_letters TO pg_monitor;

-- Deletes of documents whose rows are gone, asked for by retry_dead_letters().
-- The output plugin decodes inserts into this table (rows are deleted in the
-- same transaction): only the extension owner can write it, so nobody else
-- can make the worker delete a document.
CREATE TABLE resend_deletes (
    staging_table regclass NOT NULL,
    partition_key text NOT NULL,    -- a JSON array, written as the plugin writes keys
    doc_id        text NOT NULL
);
REVOKE ALL ON resend_deletes FROM PUBLIC;
-- deletable under a FOR ALL TABLES publication too
ALTER TABLE resend_deletes REPLICA IDENTITY FULL;

-- Touches that must be sent although they change nothing (resync(),
-- retry_dead_letters()): an insert here, before the touches and in the same
-- transaction, makes the output plugin send that transaction's UPDATEs of the
-- table even when cosmos_sink.skip_unchanged leaves out unchanged rows. Only
-- the extension owner can write it, so nobody else can make a no-op UPDATE
-- cost a Cosmos DB write. Always empty (rows are deleted in the same
-- transaction).
CREATE TABLE resend_rows (
    staging_table regclass NOT NULL
);
REVOKE ALL ON resend_rows FROM PUBLIC;
ALTER TABLE resend_rows REPLICA IDENTITY FULL;

-- Runs one statement (parameters $1.. as text) as the owner of a table, as a
-- security-restricted operation with a pinned search_path, the way REFRESH
-- MATERIALIZED VIEW runs a view's query: triggers, defaults, generated
-- columns, policies and operators the owner wrote run with the owner's
-- rights, never the caller's. Returns the first column of the first row (for
-- a query), or the number of rows processed. Superusers only.
CREATE FUNCTION as_table_owner(staging_table regclass, statement text, VARIADIC args text[] DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'as_table_owner' LANGUAGE C;
REVOKE ALL ON FUNCTION as_table_owner(regclass, text, text[]) FROM PUBLIC;

-- The worker's shared state (one row); the status view adds the slot's view
CREATE FUNCTION worker_status(OUT state text, OUT worker_pid integer,
                              OUT decoded_lsn pg_lsn, OUT oldest_unacked_commit timestamptz,
                              OUT last_ack_at timestamptz, OUT in_flight_requests integer,
                              OUT last_error text, OUT last_error_at timestamptz,
                              OUT paused boolean, OUT slot_name text)
RETURNS record
AS 'MODULE_PATHNAME', 'worker_status' LANGUAGE C;
REVOKE ALL ON FUNCTION worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION worker_status() TO pg_monitor;

-- (the status view is defined below, after the resyncs table it reports on)

CREATE FUNCTION pause() RETURNS void
AS 'MODULE_PATHNAME', 'pause_forwarding' LANGUAGE C;
CREATE FUNCTION resume() RETURNS void
AS 'MODULE_PATHNAME', 'resume_forwarding' LANGUAGE C;

REVOKE ALL ON FUNCTION pause() FROM PUBLIC;
REVOKE ALL ON FUNCTION resume() FROM PUBLIC;

-- Per-route counters kept by the worker in shared memory
CREATE FUNCTION container_stats_internal(OUT route_id integer, OUT upserts bigint,
    OUT deletes bigint, OUT requests bigint, OUT throttled bigint, OUT retries bigint,
    OUT dead_lettered bigint, OUT ru_total numeric, OUT ru_per_second float8,
    OUT avg_batch_ops float8, OUT p50_ms float8, OUT p99_ms float8,
    OUT last_ack_at timestamptz, OUT stats_reset timestamptz, OUT relid oid,
    OUT truncates bigint, OUT skipped bigint, OUT provisioned_ru_per_second float8,
    OUT ru_budget float8, OUT ru_budget_source text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'container_stats_internal' LANGUAGE C;
REVOKE ALL ON FUNCTION container_stats_internal() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION container_stats_internal() TO pg_monitor;

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
       COALESCE(s.truncates, 0) AS truncates,
       COALESCE(s.skipped, 0) AS skipped,
       s.provisioned_ru_per_second,
       s.ru_budget,
       s.ru_budget_source
  FROM routes r
  LEFT JOIN container_stats_internal() s ON s.route_id = r.route_id;

CREATE FUNCTION reset_stats() RETURNS void
AS 'MODULE_PATHNAME', 'reset_stats' LANGUAGE C;
REVOKE ALL ON FUNCTION reset_stats() FROM PUBLIC;
GRANT SELECT ON container_stats TO pg_monitor;

-- Re-sends parked records from the current state of their staging rows: a row
-- that still exists is touched (its UPDATE carries the newest document); a row
-- that is gone gets its delete re-sent, in commit order, through
-- resend_deletes. Statements on the table run as its owner (as_table_owner).
-- A record that cannot be re-sent keeps retried_at NULL and says why in
-- retry_error; the others go on. Returns how many records were re-sent.
CREATE FUNCTION retry_dead_letters(staging_table regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rt record;
    dl record;
    id_type text;
    pk_types text[];
    pk_exprs text;
    pk_text text;
    row_pk_text text;
    part text;
    found_rows bigint;
    touched bigint;
    n bigint := 0;
BEGIN
    FOR rt IN SELECT r.staging_table AS tbl, r.id_column, r.partition_key
                FROM @extschema@.routes r
               WHERE retry_dead_letters.staging_table IS NULL
                  OR r.staging_table = retry_dead_letters.staging_table
               ORDER BY r.route_id
    LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO id_type
          FROM pg_attribute a WHERE a.attrelid = rt.tbl AND a.attname = rt.id_column;
        -- partition key columns by their base types (a domain's check is the
        -- owner's code), and the plugin's text of a row's key in SQL
        SELECT array_agg(format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END,
                                     CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)
                         ORDER BY k.o),
               string_agg(format('COALESCE(to_json(%I::%s)::text, ''null'')', k.col,
                                 format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END,
                                             CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)),
                          ' || '','' || ' ORDER BY k.o)
          INTO pk_types, pk_exprs
          FROM unnest(rt.partition_key) WITH ORDINALITY AS k(col, o)
          JOIN pg_attribute a ON a.attrelid = rt.tbl AND a.attname = k.col
          JOIN pg_type t ON t.oid = a.atttypid;
        -- writers wait while the table is retried: a row re-inserted meanwhile
        -- cannot land before the delete re-sent for its old self
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', rt.tbl);
        -- the touches below change nothing by design: mark them to be sent
        -- (cosmos_sink.skip_unchanged would leave them out)
        INSERT INTO @extschema@.resend_rows VALUES (rt.tbl);
        DELETE FROM @extschema@.resend_rows;
        FOR dl IN SELECT d.id, d.operation, d.doc_id, d.partition_key
                    FROM @extschema@.dead_letters d
                   WHERE d.staging_table = rt.tbl AND d.retried_at IS NULL AND d.doc_id IS NOT NULL
                   ORDER BY d.id
                     FOR UPDATE
        LOOP
            BEGIN
                -- the record's partition key as the plugin writes it (the worker
                -- keys each document's order by that text): each value through
                -- its column's type
                pk_text := NULL;
                IF jsonb_typeof(dl.partition_key) = 'array'
                   AND jsonb_array_length(dl.partition_key) = cardinality(pk_types) THEN
                    FOR i IN 1 .. cardinality(pk_types) LOOP
                        IF jsonb_typeof(dl.partition_key -> (i - 1)) = 'null' THEN
                            part := 'null';
                        ELSE
                            EXECUTE format('SELECT to_json($1::%s)::text', pk_types[i])
                               INTO part USING dl.partition_key ->> (i - 1);
                        END IF;
                        pk_text := concat_ws(',', pk_text, part);
                    END LOOP;
                    pk_text := '[' || pk_text || ']';
                END IF;
                -- every statement on the table runs as its owner (as_table_owner)
                found_rows := @extschema@.as_table_owner(rt.tbl,
                                  format('SELECT count(*) FROM (SELECT FROM %s WHERE %I = $1::%s LIMIT 1) s',
                                         rt.tbl, rt.id_column, id_type),
                                  dl.doc_id)::bigint;
                IF found_rows > 0 AND dl.operation = 'delete' AND pk_text IS NOT NULL THEN
                    -- a parked delete of a row that lives on under another key:
                    -- its old document must still go
                    row_pk_text := '[' || @extschema@.as_table_owner(rt.tbl,
                                       format('SELECT %s FROM %s WHERE %I = $1::%s LIMIT 1',
                                              pk_exprs, rt.tbl, rt.id_column, id_type),
                                       dl.doc_id) || ']';
                    IF row_pk_text IS DISTINCT FROM pk_text THEN
                        INSERT INTO @extschema@.resend_deletes VALUES (rt.tbl, pk_text, dl.doc_id);
                        DELETE FROM @extschema@.resend_deletes;
                    END IF;
                END IF;
                IF found_rows > 0 THEN
                    touched := @extschema@.as_table_owner(rt.tbl,
                                   format('UPDATE %s SET %I = %I WHERE %I = $1::%s',
                                          rt.tbl, rt.id_column, rt.id_column, rt.id_column, id_type),
                                   dl.doc_id)::bigint;
                    IF touched = 0 THEN
                        RAISE EXCEPTION 'the row exists, but its touch changed nothing (a trigger or rule of the table skipped it)';
                    END IF;
                ELSIF pk_text IS NOT NULL THEN
                    -- the plugin decodes the insert as a delete, in commit order
                    INSERT INTO @extschema@.resend_deletes VALUES (rt.tbl, pk_text, dl.doc_id);
                    DELETE FROM @extschema@.resend_deletes;
                ELSE
                    RAISE EXCEPTION 'the row is gone and the record has no partition key its delete could name';
                END IF;
                UPDATE @extschema@.dead_letters SET retried_at = now(), retry_error = NULL WHERE id = dl.id;
                n := n + 1;
            EXCEPTION WHEN others THEN
                -- one record (or one owner's code) cannot hold back the others
                UPDATE @extschema@.dead_letters SET retry_error = sqlerrm WHERE id = dl.id;
                RAISE WARNING 'cosmos_sink: the dead letter of % id % was not re-sent: %', rt.tbl, dl.doc_id, sqlerrm;
            END;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION retry_dead_letters(regclass) FROM PUBLIC;

-- ===========================================================================
-- flink_ddl(): the Flink SQL CREATE TABLE that writes a staging table through
-- Flink's JDBC connector (flink-connector-jdbc, PostgreSQL dialect)
-- ===========================================================================

-- How Flink's JDBC connector can write a column of this type: the Flink SQL
-- type (NULL: it cannot), a note for the reader, what the value travels as
-- when it is text PostgreSQL must convert (the JDBC URL then needs
-- stringtype=unspecified), and whether it is a timestamptz declared TIMESTAMP.
-- Facts of the connector behind this (PostgresDialect, its converters): it
-- writes no ARRAY ("Writing ARRAY type is not yet supported") and no
-- TIMESTAMP_LTZ ("Unsupported type"); INTERVAL is not among its types; TIME is
-- bound through java.sql.Time (whole seconds); TIMESTAMP(0) passes validation
-- from 3.4 on; strings are bound as varchar; DECIMAL is at most 38 digits.
CREATE FUNCTION flink_type_internal(typid oid, typmod integer,
                                    OUT flink_type text, OUT note text,
                                    OUT sent_as_text text, OUT is_timestamptz boolean)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    base record;
    p integer;
    s integer;
BEGIN
    is_timestamptz := false;
    SELECT typtype, typbasetype, typtypmod, typelem, typsubscript INTO t
      FROM pg_type WHERE oid = typid;
    IF NOT FOUND THEN
        note := 'unknown type';
        RETURN;
    END IF;

    -- a domain is written as its base type; PostgreSQL checks its constraints
    IF t.typtype = 'd' THEN
        SELECT * INTO base FROM @extschema@.flink_type_internal(t.typbasetype,
            CASE WHEN typmod >= 0 THEN typmod ELSE t.typtypmod END);
        flink_type := base.flink_type;
        sent_as_text := base.sent_as_text;
        is_timestamptz := base.is_timestamptz;
        note := concat_ws(': ', format('domain over %s', format_type(t.typbasetype, t.typtypmod)),
                          base.note);
        RETURN;
    END IF;

    IF t.typsubscript = 'pg_catalog.array_subscript_handler'::regproc THEN
        SELECT * INTO base FROM @extschema@.flink_type_internal(t.typelem, typmod);
        note := 'Flink''s JDBC sink cannot write arrays'
                || CASE WHEN base.flink_type IS NOT NULL
                        THEN format(' (ARRAY<%s> is read-only)', base.flink_type) ELSE '' END;
        RETURN;
    END IF;

    IF t.typtype = 'e' THEN
        flink_type := 'STRING';
        sent_as_text := 'enum';
        note := 'enum, written as text';
        RETURN;
    END IF;
    IF t.typtype <> 'b' THEN
        note := CASE t.typtype WHEN 'c' THEN 'composite type' WHEN 'r' THEN 'range type'
                               WHEN 'm' THEN 'multirange type' ELSE 'pseudo-type' END
                || ', Flink''s JDBC connector has no type for it';
        RETURN;
    END IF;

    CASE typid
    WHEN 'boolean'::regtype THEN flink_type := 'BOOLEAN';
    WHEN 'smallint'::regtype THEN flink_type := 'SMALLINT';
    WHEN 'integer'::regtype THEN flink_type := 'INT';
    WHEN 'bigint'::regtype THEN flink_type := 'BIGINT';
    WHEN 'real'::regtype THEN flink_type := 'FLOAT';
    WHEN 'double precision'::regtype THEN flink_type := 'DOUBLE';
    WHEN 'numeric'::regtype THEN
        IF typmod < 4 THEN
            flink_type := 'DECIMAL(38, 18)';
            note := 'numeric without precision: values need at most 20 integer digits, '
                    || 'decimals past 18 are rounded';
        ELSE
            p := ((typmod - 4) >> 16) & 65535;
            s := (((typmod - 4) & 2047) # 1024) - 1024;     -- may be negative (PostgreSQL 15)
            IF s < 0 THEN
                flink_type := format('DECIMAL(%s, 0)', least(p - s, 38));
                note := format('numeric(%s,%s): PostgreSQL rounds to multiples of 1%s',
                               p, s, repeat('0', -s));
            ELSIF greatest(p, s) <= 38 THEN
                flink_type := format('DECIMAL(%s, %s)', greatest(p, s), s);
            ELSE
                flink_type := format('DECIMAL(38, %s)', least(s, 38));
                note := format('numeric(%s,%s): Flink''s DECIMAL has at most 38 digits', p, s);
            END IF;
        END IF;
    WHEN 'text'::regtype, 'name'::regtype THEN flink_type := 'STRING';
    WHEN 'character varying'::regtype THEN
        flink_type := CASE WHEN typmod >= 4 THEN format('VARCHAR(%s)', typmod - 4) ELSE 'STRING' END;
    WHEN 'character'::regtype THEN
        flink_type := CASE WHEN typmod >= 4 THEN format('CHAR(%s)', typmod - 4) ELSE 'STRING' END;
    WHEN 'bytea'::regtype THEN flink_type := 'BYTES';
    WHEN 'date'::regtype THEN flink_type := 'DATE';
    WHEN 'time without time zone'::regtype THEN
        p := CASE WHEN typmod >= 0 THEN typmod ELSE 6 END;
        flink_type := format('TIME(%s)', least(p, 3));     -- Flink's TIME keeps milliseconds
        IF p > 0 THEN
            note := format('time%s: the JDBC sink writes whole seconds',
                           CASE WHEN typmod >= 0 THEN format('(%s)', p) ELSE '' END);
        END IF;
    WHEN 'timestamp without time zone'::regtype, 'timestamp with time zone'::regtype THEN
        p := CASE WHEN typmod >= 0 THEN typmod ELSE 6 END;
        flink_type := format('TIMESTAMP(%s)', p);
        IF typid = 'timestamp with time zone'::regtype THEN
            is_timestamptz := true;
            note := 'timestamptz: see the time zone note';
        END IF;
        IF p = 0 THEN
            note := concat_ws('; ', note, 'precision 0 needs flink-connector-jdbc 3.4 or later');
        END IF;
    WHEN 'uuid'::regtype, 'json'::regtype, 'jsonb'::regtype THEN
        flink_type := 'STRING';
        sent_as_text := typid::regtype::text;
        note := sent_as_text || ', written as text';
    WHEN 'interval'::regtype THEN
        note := 'Flink''s JDBC connector has no PostgreSQL interval type';
    WHEN 'time with time zone'::regtype THEN
        note := 'Flink has no TIME WITH TIME ZONE';
    ELSE
        note := 'Flink''s JDBC connector has no type for it';
    END CASE;
    RETURN;
END
$$;

-- Flink SQL CREATE TABLE ... WITH ('connector' = 'jdbc', ...) to write the
-- table from Flink: its columns in order with their types and NOT NULL, and
-- the primary key (else the route's id column) as the upsert key. What Flink
-- cannot write is left out, each on a comment line saying why; notes at the top
-- say what follows from that. Reads catalogs only: open to everyone, for the
-- tables they may use.
CREATE FUNCTION flink_ddl(staging_table regclass, jdbc_url text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    col record;
    ft record;
    qname text;                 -- the table as PostgreSQL takes it in SQL
    fname text;                 -- a column as Flink SQL takes it
    entries text[] := '{}';     -- the column list: definitions and comment lines
    is_def boolean[] := '{}';
    comments text[] := '{}';    -- comment after a definition
    written name[] := '{}';
    left_out text[] := '{}';
    left_out_by_type boolean := false;
    bad_names name[] := '{}';
    not_null_left_out text[] := '{}';
    text_kinds text[] := '{}';
    has_tstz boolean := false;
    key_cols name[];
    key_source text;            -- 'pk', 'route' or NULL
    route_id name;
    routes_readable boolean;
    has_unique boolean;
    notes text[] := '{}';       -- paragraphs, wrapped into comment lines
    opts text[];
    url text := jdbc_url;
    last_def integer := 0;
    result text;
BEGIN
    IF flink_ddl.staging_table IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.relname, c.relkind, c.relpersistence, n.nspname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = flink_ddl.staging_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', flink_ddl.staging_table::oid
              USING ERRCODE = 'undefined_table';
    END IF;
    qname := format('%I.%I', rel.nspname, rel.relname);
    IF NOT (has_table_privilege(flink_ddl.staging_table, 'SELECT, INSERT, UPDATE, DELETE')
            OR has_any_column_privilege(flink_ddl.staging_table, 'SELECT, INSERT, UPDATE')) THEN
        RAISE EXCEPTION 'permission denied for table %', rel.relname
              USING ERRCODE = 'insufficient_privilege',
                    HINT = format('flink_ddl() describes tables you may read or write. Flink''s role '
                                  'needs GRANT SELECT, INSERT, UPDATE, DELETE ON %s.', qname);
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', rel.relname
              USING ERRCODE = 'wrong_object_type',
                    HINT = 'Flink''s JDBC sink writes into tables: pass a plain or partitioned table.';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION '"%" is a temporary table', rel.relname
              USING ERRCODE = 'wrong_object_type',
                    HINT = 'Only the session that created it sees it; Flink cannot write it.';
    END IF;

    -- the upsert key: the primary key, else the route's id column
    SELECT array_agg(a.attname ORDER BY k.ord) INTO key_cols
      FROM pg_index x
      CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
     WHERE x.indrelid = flink_ddl.staging_table AND x.indisprimary AND k.ord <= x.indnkeyatts;
    IF key_cols IS NOT NULL THEN
        key_source := 'pk';
    ELSE
        routes_readable := has_table_privilege('@extschema@.routes', 'SELECT');
        IF routes_readable THEN
            SELECT r.id_column INTO route_id
              FROM @extschema@.routes r WHERE r.staging_table = flink_ddl.staging_table;
            IF route_id IS NOT NULL THEN
                key_cols := ARRAY[route_id];
                key_source := 'route';
            END IF;
        END IF;
    END IF;

    FOR col IN SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.atthasdef,
                      a.attgenerated, a.attidentity,
                      format_type(a.atttypid, a.atttypmod) AS pg_type
                 FROM pg_attribute a
                WHERE a.attrelid = flink_ddl.staging_table AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum
    LOOP
        fname := '`' || replace(col.attname, '`', '``') || '`';
        is_def := is_def || false;
        comments := comments || NULL::text;
        IF col.attgenerated <> '' THEN
            entries := entries || format('-- generated: %s %s is computed by PostgreSQL',
                                         fname, col.pg_type);
            CONTINUE;
        ELSIF col.attidentity = 'a' THEN
            entries := entries || format('-- generated: %s %s is GENERATED ALWAYS AS IDENTITY '
                                         '(PostgreSQL refuses written values)', fname, col.pg_type);
            CONTINUE;
        END IF;
        SELECT * INTO ft FROM @extschema@.flink_type_internal(col.atttypid, col.atttypmod);
        IF ft.flink_type IS NULL THEN
            entries := entries || format('-- unsupported: %s %s: %s', fname, col.pg_type, ft.note);
            left_out_by_type := true;
        -- Flink's PostgreSQL dialect puts column names into its SQL unquoted
        ELSIF regexp_replace(col.attname, '[^\x01-\x7f]', 'a', 'g') !~ '^[a-z_][a-z0-9_$]*$'
              OR EXISTS (SELECT FROM pg_get_keywords() k
                          WHERE k.word = col.attname AND k.catcode IN ('R', 'T')) THEN
            entries := entries || format('-- unsupported: %s %s: the name needs quotes in PostgreSQL',
                                         fname, col.pg_type);
            bad_names := bad_names || col.attname;
        ELSE
            entries := entries || (fname || ' ' || ft.flink_type
                                   || CASE WHEN col.attnotnull OR col.attname = ANY (key_cols)
                                           THEN ' NOT NULL' ELSE '' END);
            is_def[cardinality(entries)] := true;
            comments[cardinality(entries)] := ft.note;
            last_def := cardinality(entries);
            written := written || col.attname;
            IF ft.sent_as_text IS NOT NULL AND NOT ft.sent_as_text = ANY (text_kinds) THEN
                text_kinds := text_kinds || ft.sent_as_text;
            END IF;
            has_tstz := has_tstz OR ft.is_timestamptz;
            CONTINUE;
        END IF;
        left_out := left_out || fname;
        IF col.attnotnull AND NOT col.atthasdef THEN
            not_null_left_out := not_null_left_out || fname;
        END IF;
    END LOOP;

    IF key_cols <@ written THEN
        entries := entries || format('PRIMARY KEY (%s) NOT ENFORCED',
                                     (SELECT string_agg('`' || replace(k, '`', '``') || '`', ', ' ORDER BY o)
                                        FROM unnest(key_cols) WITH ORDINALITY AS u(k, o)));
        is_def := is_def || true;
        comments := comments || NULL::text;
        last_def := cardinality(entries);
    END IF;

    -- the notes: the key
    IF key_source = 'route' AND key_cols <@ written THEN
        notes := notes || format('%s has no primary key: the upsert key is the route''s id column `%s`.',
                                 qname, replace(route_id, '`', '``'));
        SELECT EXISTS (SELECT FROM pg_index x
                        WHERE x.indrelid = flink_ddl.staging_table AND x.indisunique
                          AND x.indisvalid AND x.indimmediate AND x.indnkeyatts = 1
                          AND x.indpred IS NULL AND x.indexprs IS NULL
                          AND x.indkey[0] = (SELECT a.attnum FROM pg_attribute a
                                              WHERE a.attrelid = x.indrelid AND a.attname = route_id))
          INTO has_unique;
        IF NOT has_unique THEN
            notes := notes || ARRAY['Its INSERT ... ON CONFLICT needs a unique index on that column first:',
                                    format('    CREATE UNIQUE INDEX ON %s (%I);', qname, route_id)];
        END IF;
    ELSIF key_cols IS NOT NULL AND NOT key_cols <@ written THEN
        notes := notes || format('No PRIMARY KEY: Flink cannot write the key column%s %s, so its JDBC '
                                 'sink only appends (plain INSERT): Flink refuses queries that update '
                                 'or delete, and a replayed batch inserts its rows again.',
                                 CASE WHEN cardinality(key_cols) > 1 THEN 's' ELSE '' END,
                                 (SELECT string_agg('`' || replace(k, '`', '``') || '`', ', ' ORDER BY o)
                                    FROM unnest(key_cols) WITH ORDINALITY AS u(k, o)
                                   WHERE NOT k = ANY (written)));
    ELSIF key_cols IS NULL THEN
        notes := notes || ARRAY[
            format('No PRIMARY KEY: %s has none, and %s. Without one Flink''s JDBC sink only appends '
                   '(plain INSERT): Flink refuses queries that update or delete, and a replayed batch '
                   'inserts its rows again. Route the table (its id column becomes the key), or add one:',
                   qname, CASE WHEN routes_readable THEN 'it is not routed'
                               ELSE 'you cannot read cosmos_sink.routes for its id column' END),
            format('    ALTER TABLE %s ADD PRIMARY KEY (...);', qname)];
    END IF;

    -- what is left out
    IF cardinality(left_out) > 0 THEN
        notes := notes || format('Left out (see "unsupported" below): %s. Flink''s upsert does not '
                                 'write them: a new row gets their default (NULL if none), an updated '
                                 'row keeps its old values.', array_to_string(left_out, ', '));
        IF cardinality(not_null_left_out) > 0 THEN
            notes := notes || format('%s NOT NULL without a default: until Flink can write %s, every '
                                     'INSERT fails.', array_to_string(not_null_left_out, ', ')
                                     || CASE WHEN cardinality(not_null_left_out) > 1 THEN ' are' ELSE ' is' END,
                                     CASE WHEN cardinality(not_null_left_out) > 1 THEN 'them' ELSE 'it' END);
        END IF;
        IF cardinality(bad_names) > 0 THEN
            notes := notes || ARRAY['Flink''s JDBC connector writes column names unquoted, so it can '
                                    'write only names PostgreSQL takes unquoted (lower case, no spaces, '
                                    'not a reserved word). Rename the others, for example:',
                                    format('    ALTER TABLE %s RENAME COLUMN %I TO ...;', qname, bad_names[1])];
        END IF;
        IF left_out_by_type THEN
            notes := notes || 'To write a column of another type anyway, declare it STRING holding '
                              'PostgreSQL''s text form of the value, with stringtype=unspecified in '
                              'the JDBC URL.'::text;
        END IF;
    END IF;

    -- columns written as text; timestamptz
    IF cardinality(text_kinds) > 0 THEN
        IF url IS NULL THEN
            notes := notes || format('The URL has stringtype=unspecified: %s columns are written as '
                                     'text, and it lets PostgreSQL convert that text to the column''s '
                                     'type.', array_to_string(text_kinds, ', '));
        ELSIF url !~* '[?&]stringtype=unspecified(&|$)' THEN
            notes := notes || format('Add stringtype=unspecified to the JDBC URL: %s columns are '
                                     'written as text, which PostgreSQL converts only then (else: '
                                     'column "..." is of type ... but expression is of type character '
                                     'varying).', array_to_string(text_kinds, ', '));
        END IF;
    END IF;
    IF has_tstz THEN
        notes := notes || 'timestamptz columns are declared TIMESTAMP: Flink''s JDBC connector cannot '
                          'write TIMESTAMP_LTZ. It sends TIMESTAMP values in the TaskManager JVM''s time '
                          'zone, so run it with -Duser.timezone=UTC, SET ''table.local-time-zone'' = '
                          '''UTC'', and CAST TIMESTAMP_LTZ values to TIMESTAMP.'::text;
    END IF;

    IF url IS NULL THEN
        url := format('jdbc:postgresql://HOST:5432/%s', current_database())
               || CASE WHEN cardinality(text_kinds) > 0 THEN '?stringtype=unspecified' ELSE '' END;
    END IF;

    -- the statement
    result := format('-- Flink SQL table for PostgreSQL table %s (cosmos_sink.flink_ddl)', qname);
    IF cardinality(notes) > 0 THEN
        result := result || E'\n'
                  || (SELECT string_agg('-- ' || l, E'\n' ORDER BY n, o)
                        FROM unnest(notes) WITH ORDINALITY AS p(para, n),
                             -- wrapped at 88 characters, but for code (indented)
                             regexp_split_to_table(CASE WHEN para LIKE '    %' THEN para
                                                        ELSE rtrim(regexp_replace(para, '(.{1,88})( +|$)',
                                                                                  E'\\1\n', 'g'), E'\n')
                                                   END, E'\n') WITH ORDINALITY AS w(l, o));
    END IF;
    result := result || E'\n' || format('CREATE TABLE `%s` (', replace(rel.relname, '`', '``'));
    FOR i IN 1 .. cardinality(entries) LOOP
        result := result || E'\n  ' || entries[i]
                  || CASE WHEN is_def[i] AND i < last_def THEN ',' ELSE '' END
                  || CASE WHEN comments[i] IS NOT NULL THEN '  -- ' || comments[i] ELSE '' END;
    END LOOP;
    opts := ARRAY[
        '''connector'' = ''jdbc'',',
        format('''url'' = ''%s'',', replace(url, '''', ''''''))
          || CASE WHEN jdbc_url IS NULL THEN '  -- placeholder: your server' ELSE '' END,
        format('''table-name'' = ''%s'',', replace(qname, '''', '''''')),
        format('''username'' = ''%s'',', replace(current_user, '''', ''''''))
          || '  -- placeholder: the role Flink logs in as',
        '-- ''password'' = ''...'',  -- required with ''username'': inject it from a secret, never write it here',
        '''sink.buffer-flush.max-rows'' = ''500'',  -- rows per flush; a JDBC batch is one transaction',
        '''sink.buffer-flush.interval'' = ''1s'',',
        '''sink.max-retries'' = ''3''',
        '-- ''sink.parallelism'' = ''...''  -- if it differs from the input''s, Flink shuffles rows by key'
    ];
    RETURN result || E'\n) WITH (\n  ' || array_to_string(opts, E'\n  ') || E'\n);';
END
$$;

-- ---------------------------------------------------------------------------
-- resync(): backfill through the stream
-- ---------------------------------------------------------------------------

-- One row per requested backfill; the worker advances it chunk by chunk, each
-- chunk in its own transaction together with its progress (so it resumes
-- exactly where it stopped after a restart).
CREATE TABLE resyncs (
    staging_table regclass PRIMARY KEY,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    last_id       text,
    rows_done     bigint NOT NULL DEFAULT 0,
    rows_total    bigint,
    note          text,
    -- the sweep recover() asks for after the re-send: NULL (none), 'pending',
    -- 'running', 'done', or 'failed: <reason>'; one table per container sweeps
    sweep         text,
    docs_checked  bigint NOT NULL DEFAULT 0,   -- documents the sweep listed
    docs_deleted  bigint NOT NULL DEFAULT 0    -- documents it asked to delete
);
SELECT pg_catalog.pg_extension_config_dump('resyncs', '');
REVOKE ALL ON resyncs FROM PUBLIC;
GRANT SELECT ON resyncs TO pg_monitor;

-- Backfills every current row of a routed table. Rows are re-sent by touching
-- them in id order, a chunk per transaction (UPDATE ... SET id = id): each
-- touch carries the row's latest committed state through the same
-- commit-ordered stream as every other change, so a backfilled row can never
-- overwrite a newer streamed change, and a row deleted meanwhile is simply
-- not touched. The worker runs the chunks in the background.
CREATE FUNCTION resync(staging_table regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.routes r WHERE r.staging_table = resync.staging_table) THEN
        RAISE EXCEPTION 'table % is not routed', staging_table
              USING HINT = 'Route it with cosmos_sink.add_route() first.';
    END IF;
    INSERT INTO @extschema@.resyncs AS s (staging_table) VALUES (resync.staging_table)
    ON CONFLICT (staging_table) DO UPDATE
       SET requested_at = now(), started_at = NULL, finished_at = NULL, last_id = NULL,
           rows_done = 0, rows_total = NULL, note = NULL;
END
$$;
REVOKE ALL ON FUNCTION resync(regclass) FROM PUBLIC;

-- After a lost slot (dropped, invalidated, made again, or missing on a
-- restored backup or promoted standby): makes a new slot and re-sends every
-- routed table through it (resync()); with delete_missing, the worker then
-- sweeps each routed container and deletes the documents no routed row has
-- (sweep_step()). Returns how many tables are re-sent.
CREATE FUNCTION recover(delete_missing boolean DEFAULT true) RETURNS bigint
AS 'MODULE_PATHNAME', 'recover' LANGUAGE C STRICT
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION recover(boolean) FROM PUBLIC;

-- One chunk of a backfill (called by the worker, in its own transaction):
-- touches up to chunk rows after last_id, as the table's owner (as_table_owner);
-- returns the rows touched, 0 when done.
CREATE FUNCTION resync_step(staging_table regclass, chunk integer) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job record;
    id_type text;
    upto text;
    touched bigint;
BEGIN
    SELECT s.*, r.id_column INTO job
      FROM @extschema@.resyncs s
      LEFT JOIN @extschema@.routes r ON r.staging_table = s.staging_table
     WHERE s.staging_table = resync_step.staging_table AND s.finished_at IS NULL
       FOR UPDATE OF s;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF job.id_column IS NULL THEN
        UPDATE @extschema@.resyncs SET finished_at = now(), note = 'route removed'
         WHERE resyncs.staging_table = resync_step.staging_table;
        RETURN 0;
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO id_type
      FROM pg_attribute a
     WHERE a.attrelid = job.staging_table AND a.attname = job.id_column AND NOT a.attisdropped;
    -- the job's row is written once, at the end (a chunk is one UPDATE of it)
    IF job.started_at IS NULL THEN
        job.started_at := now();
        job.rows_total := @extschema@.as_table_owner(job.staging_table,
                              format('SELECT count(*) FROM %s', job.staging_table))::bigint;
    END IF;
    -- the chunk ends at an id value, so rows sharing an id are never split
    upto := @extschema@.as_table_owner(job.staging_table,
                format('SELECT max(%1$I)::text FROM (SELECT %1$I FROM %2$s WHERE $1 IS NULL OR %1$I > $1::%3$s'
                       ' ORDER BY %1$I LIMIT $2::integer) c', job.id_column, job.staging_table, id_type),
                job.last_id, chunk::text);
    IF upto IS NULL THEN
        UPDATE @extschema@.resyncs
           SET started_at = job.started_at, rows_total = job.rows_total, finished_at = now()
         WHERE resyncs.staging_table = resync_step.staging_table;
        RETURN 0;
    END IF;
    -- the touch changes nothing by design: mark it to be sent
    -- (cosmos_sink.skip_unchanged would leave it out)
    INSERT INTO @extschema@.resend_rows VALUES (job.staging_table);
    DELETE FROM @extschema@.resend_rows;
    touched := @extschema@.as_table_owner(job.staging_table,
                   format('UPDATE %2$s SET %1$I = %1$I WHERE ($1 IS NULL OR %1$I > $1::%3$s) AND %1$I <= $2::%3$s',
                          job.id_column, job.staging_table, id_type),
                   job.last_id, upto)::bigint;
    UPDATE @extschema@.resyncs
       SET started_at = job.started_at, rows_total = job.rows_total,
           last_id = upto, rows_done = rows_done + touched
     WHERE resyncs.staging_table = resync_step.staging_table;
    RETURN touched;
END
$$;
REVOKE ALL ON FUNCTION resync_step(regclass, integer) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- The sweep of recover(): delete the documents whose rows are gone
-- ---------------------------------------------------------------------------

-- Whether two partition key values are the same key to Cosmos DB: numbers
-- are doubles there (5 and 5.0, 10.5 and 10.50 are one key), anything else
-- must be equal JSON.
CREATE FUNCTION same_cosmos_value(a jsonb, b jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(a) = 'number' AND jsonb_typeof(b) = 'number' THEN
        RETURN a::float8 = b::float8;
    END IF;
    RETURN a = b;
EXCEPTION WHEN numeric_value_out_of_range THEN
    RETURN a = b;                   -- beyond a double: no document holds it
END
$$;
REVOKE ALL ON FUNCTION same_cosmos_value(jsonb, jsonb) FROM PUBLIC;

-- Whether two partition keys (JSON arrays) are the same key to Cosmos DB
CREATE FUNCTION same_cosmos_key(a jsonb, b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_typeof(a) = 'array' AND jsonb_typeof(b) = 'array'
           AND jsonb_array_length(a) = jsonb_array_length(b)
           AND NOT EXISTS (SELECT 1 FROM generate_series(0, jsonb_array_length(a) - 1) i
                            WHERE NOT @extschema@.same_cosmos_value(a -> i, b -> i))
$$;
REVOKE ALL ON FUNCTION same_cosmos_key(jsonb, jsonb) FROM PUBLIC;

-- One page of the sweep of a container (called by the worker, in its own
-- transaction): doc_ids and doc_keys (JSON arrays) are the documents Cosmos
-- DB listed, checked already for shape (listed counts those refused there
-- too). A document whose row is in none of the container's routed tables
-- (same id text, same key as Cosmos DB compares keys) gets its delete sent
-- through the stream (resend_deletes, in commit order). Every statement on a
-- staging table runs as its owner (as_table_owner). Returns how many deletes
-- it asked for.
--
-- Locking: every routed table of the container is locked IN SHARE MODE
-- first, which conflicts with the ROW EXCLUSIVE lock of every INSERT, UPDATE,
-- DELETE and MERGE. So no writer of these tables can commit between the check
-- and the end of this transaction: a writer that committed before the lock
-- was granted is seen by the checks (each statement takes a new snapshot,
-- after the lock), and its own change is in the stream before this
-- transaction's deletes; a writer that commits later waits for this
-- transaction, so its change follows the delete in commit order, and the
-- worker applies one document's changes in that order (a row re-inserted
-- right after the sweep ends up upserted, never deleted). SHARE, not SHARE
-- ROW EXCLUSIVE: sweeps of other containers and readers go on; the lock waits
-- at most lock_timeout (the worker sets 5 s) for running writers.
CREATE FUNCTION sweep_step(staging_table regclass, doc_ids text[], doc_keys text[], listed integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    me record;
    rt record;
    tbls regclass[] := '{}';
    id_cols name[] := '{}';
    id_types text[] := '{}';
    key_exprs text[] := '{}';
    pk_types text[];
    doc_key jsonb;
    row_keys text;
    alive boolean;
    pk_text text;
    part text;
    deleted bigint := 0;
BEGIN
    SELECT r.cosmos_database, r.container, r.partition_key INTO me
      FROM @extschema@.routes r WHERE r.staging_table = sweep_step.staging_table;
    IF NOT FOUND THEN
        UPDATE @extschema@.resyncs SET sweep = 'failed: route removed'
         WHERE resyncs.staging_table = sweep_step.staging_table;
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.routes r
                WHERE r.cosmos_database = me.cosmos_database AND r.container = me.container
                  AND r.partition_key IS DISTINCT FROM me.partition_key) THEN
        UPDATE @extschema@.resyncs SET sweep = 'failed: the routes of this container name different partition keys'
         WHERE resyncs.staging_table = sweep_step.staging_table;
        RETURN 0;
    END IF;
    -- every routed table of the container, locked in route order (no deadlock
    -- between two sweeps); the key of a row as Cosmos DB sees it, in JSON
    FOR rt IN SELECT r.staging_table AS tbl, r.id_column,
                     (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                       WHERE a.attrelid = r.staging_table AND a.attname = r.id_column) AS id_type,
                     (SELECT string_agg(format('to_jsonb(%I)', k.col), ', ' ORDER BY k.o)
                        FROM unnest(r.partition_key) WITH ORDINALITY AS k(col, o)) AS key_expr
                FROM @extschema@.routes r
               WHERE r.cosmos_database = me.cosmos_database AND r.container = me.container
               ORDER BY r.route_id
    LOOP
        PERFORM @extschema@.as_table_owner(rt.tbl, format('LOCK TABLE %s IN SHARE MODE', rt.tbl));
        tbls := tbls || rt.tbl;
        id_cols := id_cols || rt.id_column;
        id_types := id_types || rt.id_type;
        key_exprs := key_exprs || rt.key_expr;
    END LOOP;
    -- the partition key columns' base types (a domain's check is the owner's code)
    SELECT array_agg(format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END,
                                 CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)
                     ORDER BY k.o)
      INTO pk_types
      FROM unnest(me.partition_key) WITH ORDINALITY AS k(col, o)
      JOIN pg_attribute a ON a.attrelid = sweep_step.staging_table AND a.attname = k.col
      JOIN pg_type t ON t.oid = a.atttypid;

    FOR i IN 1 .. COALESCE(cardinality(doc_ids), 0) LOOP
        doc_key := doc_keys[i]::jsonb;
        alive := false;
        FOR j IN 1 .. cardinality(tbls) LOOP
            BEGIN
                -- the rows whose id has exactly this text (the type's output, as
                -- the plugin names documents)
                row_keys := @extschema@.as_table_owner(tbls[j],
                                format('SELECT jsonb_agg(jsonb_build_array(%s))::text FROM %s WHERE %I = $1::%s AND format(''%%s'', %I) = $1',
                                       key_exprs[j], tbls[j], id_cols[j], id_types[j], id_cols[j]),
                                doc_ids[i]);
            EXCEPTION WHEN data_exception THEN
                row_keys := NULL;       -- an id this table's id type cannot hold is none of its rows
            END;
            IF row_keys IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(row_keys::jsonb) k(key)
                                                 WHERE @extschema@.same_cosmos_key(k.key, doc_key)) THEN
                alive := true;
                EXIT;
            END IF;
        END LOOP;
        CONTINUE WHEN alive;
        -- the delete names the key as the plugin writes it for a row with this
        -- key (the worker orders a document's changes by that text); a value
        -- no row of this type can have goes as listed
        pk_text := NULL;
        FOR k IN 0 .. jsonb_array_length(doc_key) - 1 LOOP
            part := (doc_key -> k)::text;
            IF jsonb_typeof(doc_key -> k) <> 'null' THEN
                BEGIN
                    EXECUTE format('SELECT to_json($1::%s)::text', pk_types[k + 1])
                       INTO part USING doc_key ->> k;
                    IF NOT @extschema@.same_cosmos_value(part::jsonb, doc_key -> k) THEN
                        part := (doc_key -> k)::text;
                    END IF;
                EXCEPTION WHEN data_exception THEN
                    part := (doc_key -> k)::text;
                END;
            END IF;
            pk_text := concat_ws(',', pk_text, part);
        END LOOP;
        -- the plugin decodes the insert as a delete, in commit order
        INSERT INTO @extschema@.resend_deletes VALUES (sweep_step.staging_table, '[' || pk_text || ']', doc_ids[i]);
        deleted := deleted + 1;
    END LOOP;
    DELETE FROM @extschema@.resend_deletes;
    UPDATE @extschema@.resyncs
       SET docs_checked = docs_checked + listed, docs_deleted = docs_deleted + deleted
     WHERE resyncs.staging_table = sweep_step.staging_table;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION sweep_step(regclass, text[], text[], integer) FROM PUBLIC;

-- One row: the worker's state, the slot's position and lag, running backfills
CREATE VIEW status AS
SELECT w.state,
       w.worker_pid,
       w.slot_name,
       s.confirmed_flush_lsn AS confirmed_lsn,
       x.current_lsn,
       COALESCE(pg_catalog.pg_wal_lsn_diff(x.current_lsn, s.confirmed_flush_lsn), 0)::bigint AS lag_bytes,
       COALESCE(extract(epoch FROM pg_catalog.now() - w.oldest_unacked_commit), 0)::float8
         AS lag_seconds,
       w.last_ack_at,
       w.in_flight_requests,
       s.wal_status,
       s.safe_wal_size,
       w.last_error,
       w.last_error_at,
       (SELECT string_agg(CASE WHEN r.finished_at IS NULL
                               THEN format('%s %s/%s', r.staging_table, r.rows_done,
                                           COALESCE(r.rows_total::text, '?'))
                               WHEN r.note LIKE 'failed:%'
                               THEN format('%s %s', r.staging_table, r.note)
                               WHEN r.sweep IN ('pending', 'running')
                               THEN format('%s sweeping %s checked, %s deleted', r.staging_table,
                                           r.docs_checked, r.docs_deleted)
                               ELSE format('%s sweep %s', r.staging_table, r.sweep) END,
                          ', ' ORDER BY r.requested_at)
          FROM resyncs r
         WHERE r.finished_at IS NULL OR r.note LIKE 'failed:%'
            OR r.sweep IN ('pending', 'running') OR r.sweep LIKE 'failed:%') AS resync_progress
  FROM worker_status() w
  -- on a standby (read-only), the WAL replayed so far
  CROSS JOIN LATERAL (SELECT CASE WHEN pg_catalog.pg_is_in_recovery()
                                  THEN pg_catalog.pg_last_wal_replay_lsn()
                                  ELSE pg_catalog.pg_current_wal_lsn() END AS current_lsn) x
  LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = w.slot_name;
GRANT SELECT ON status TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Schema changes of routed tables
-- ---------------------------------------------------------------------------

-- The event triggers fire for every role's DDL, so their functions run as the
-- extension owner (SECURITY DEFINER, pinned search_path): any role can alter
-- and drop its own tables, though only the owner can read routes.

-- After ALTER TABLE (of the table or of a parent that recursed into it): a
-- routed table must keep its id and partition key columns, with their types
-- (documents are keyed by their text and the container's partition key path
-- names them), and a replica identity that logs them. Other columns may come,
-- go, be renamed or change type: documents take the new shape from that point
-- of the stream.
CREATE FUNCTION ddl_guard() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd record;
    rt record;
    col text;
    now_types text[];
    ident "char";
    toastable boolean;
    covered boolean;
BEGIN
    FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands()
                WHERE object_type IN ('table', 'table column') AND command_tag = 'ALTER TABLE'
                  AND classid = 'pg_class'::regclass
    LOOP
        -- the table and every partition or child it recursed into
        FOR rt IN SELECT r.* FROM @extschema@.routes r
                   WHERE r.staging_table IN (WITH RECURSIVE tree(relid) AS (
                                                 SELECT cmd.objid
                                                 UNION
                                                 SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
                                             SELECT relid FROM tree)
        LOOP
            FOREACH col IN ARRAY rt.partition_key || rt.id_column::text LOOP
                IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                                WHERE a.attrelid = rt.staging_table AND a.attname = col
                                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
                    RAISE EXCEPTION 'column "%" of table % is used by its cosmos_sink route', col, rt.staging_table
                          USING HINT = format('It is the route''s %s. Call cosmos_sink.remove_route(%L) first, then add a new route.',
                                              CASE WHEN col = rt.id_column::text THEN 'id column' ELSE 'partition key' END,
                                              rt.staging_table::text);
                END IF;
            END LOOP;
            -- a key column of another type writes other ids or keys: documents would fork
            now_types := ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
                                 FROM unnest(rt.id_column::text || rt.partition_key) WITH ORDINALITY AS k(c, o)
                                 JOIN pg_attribute a ON a.attrelid = rt.staging_table AND a.attname = k.c
                                ORDER BY k.o);
            IF rt.key_types IS NOT NULL AND now_types IS DISTINCT FROM rt.key_types THEN
                RAISE EXCEPTION 'the type of a key column of table % is used by its cosmos_sink route', rt.staging_table
                      USING DETAIL = format('The id and partition key columns were %s; now %s. Their text would change, and with it the documents'' ids or keys.',
                                            array_to_string(rt.key_types, ', '), array_to_string(now_types, ', ')),
                            HINT = format('Call cosmos_sink.remove_route(%L) first, change the table, add a new route, then cosmos_sink.resync() it.',
                                          rt.staging_table::text);
            END IF;
            -- UPDATE and DELETE must still log the old id and partition key (and
            -- the whole old row when a column can be TOASTed), as add_route() set up
            SELECT c.relreplident INTO ident FROM pg_class c WHERE c.oid = rt.staging_table;
            IF ident <> 'f' THEN
                toastable := EXISTS (SELECT 1 FROM pg_attribute a
                                      WHERE a.attrelid = rt.staging_table AND a.attnum > 0 AND NOT a.attisdropped
                                        AND a.attlen = -1 AND a.attstorage <> 'p');
                covered := ident <> 'n' AND COALESCE((
                    SELECT bool_and(a.attnum = ANY (i.indkey::int2[]))
                      FROM pg_index i
                      JOIN pg_attribute a ON a.attrelid = rt.staging_table
                                         AND a.attname = ANY (rt.partition_key || rt.id_column::text)
                     WHERE i.indrelid = rt.staging_table
                       AND CASE ident WHEN 'd' THEN i.indisprimary ELSE i.indisreplident END), false);
                IF toastable OR NOT covered THEN
                    RAISE EXCEPTION 'replica identity of table % no longer logs what its cosmos_sink route needs', rt.staging_table
                          USING DETAIL = CASE WHEN covered
                                              THEN 'Its columns can be TOASTed: UPDATEs must log the whole old row.'
                                              ELSE 'UPDATE and DELETE must log the old id and partition key, or old documents stay in Cosmos DB.' END,
                                HINT = format('Run: ALTER TABLE %s REPLICA IDENTITY FULL;', rt.staging_table);
                END IF;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- Tells decoding (at this transaction's LSN) that a route row changed
CREATE FUNCTION route_changed() RETURNS void
AS 'MODULE_PATHNAME', 'route_changed' LANGUAGE C;
REVOKE ALL ON FUNCTION route_changed() FROM PUBLIC;

-- After DROP TABLE: its route goes with it (changes committed before the drop
-- are still forwarded; they are in the stream before this transaction).
CREATE FUNCTION drop_guard() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects()
                WHERE object_type = 'table' AND NOT is_temporary
    LOOP
        IF EXISTS (SELECT 1 FROM @extschema@.routes r WHERE r.staging_table = obj.objid) THEN
            DELETE FROM @extschema@.routes r WHERE r.staging_table = obj.objid;
            DELETE FROM @extschema@.resyncs s WHERE s.staging_table = obj.objid;
            PERFORM @extschema@.route_changed();
            RAISE NOTICE 'removed the cosmos_sink route of dropped table %', obj.object_identity;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION ddl_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION drop_guard() FROM PUBLIC;

CREATE EVENT TRIGGER cosmos_sink_ddl_guard ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION ddl_guard();
CREATE EVENT TRIGGER cosmos_sink_drop_guard ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION drop_guard();
