-- Route registry: add_route / remove_route and every validation error
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;
-- start without the worker's slot, so that add_route() creates it here
SELECT count(*) >= 0 AS slot_reset FROM (SELECT pg_drop_replication_slot(slot_name)
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink') s;
DELETE FROM cosmos_sink.slot_checkpoint;

-- a typical Flink staging table: single-column primary key is the id
CREATE TABLE orders_staging (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
                             amount numeric(12,2), note text);
SELECT route_id > 0 AS has_route_id, staging_table, cosmos_database, container, partition_key, id_column
  FROM cosmos_sink.add_route('orders_staging', cosmos_database => 'shop',
                             container => 'orders', partition_key => 'customer_id');
-- the slot exists as soon as add_route() returns
SELECT slot_name, plugin, slot_type, database = current_database() AS this_db
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink';
-- text columns can be TOASTed, so the default identity became FULL
SELECT relreplident FROM pg_class WHERE oid = 'orders_staging'::regclass;
SELECT staging_table, cosmos_database, container, partition_key, id_column FROM cosmos_sink.routes;

-- routed twice
SELECT cosmos_sink.add_route('orders_staging', 'shop', 'orders2', 'customer_id');

-- hierarchical partition key, as an array literal and as an array
CREATE TABLE events_staging (tenant text, user_id int, session_id uuid,
                             event_id bigint PRIMARY KEY, payload jsonb);
SELECT partition_key, id_column
  FROM cosmos_sink.add_route('events_staging', 'shop', 'events', partition_key => '{tenant,user_id,session_id}');
CREATE TABLE clicks_staging (site text, page text, click_id uuid PRIMARY KEY);
SELECT partition_key FROM cosmos_sink.add_route('clicks_staging', 'shop', 'clicks', ARRAY['site', 'page']);

-- fixed-width columns and a key that covers id and partition key: identity stays DEFAULT
CREATE TABLE metrics_staging (device_id int, metric_id bigint, v float8, PRIMARY KEY (device_id, metric_id));
SELECT id_column FROM cosmos_sink.add_route('metrics_staging', 'shop', 'metrics', 'device_id', id_column => 'metric_id');
SELECT relreplident FROM pg_class WHERE oid = 'metrics_staging'::regclass;

-- default identity that lacks the partition key: switched to FULL, with a notice saying why
CREATE TABLE readings_staging (reading_id bigint PRIMARY KEY, sensor int NOT NULL, v float8);
SELECT id_column FROM cosmos_sink.add_route('readings_staging', 'shop', 'readings', 'sensor');
SELECT relreplident FROM pg_class WHERE oid = 'readings_staging'::regclass;

-- an identity the user chose that lacks the partition key: refused with the fix
CREATE TABLE gauges_staging (gauge_id bigint PRIMARY KEY, site int NOT NULL, v float8);
ALTER TABLE gauges_staging REPLICA IDENTITY NOTHING;
SELECT cosmos_sink.add_route('gauges_staging', 'shop', 'gauges', 'site');
CREATE UNIQUE INDEX gauges_id ON gauges_staging (gauge_id);
ALTER TABLE gauges_staging REPLICA IDENTITY USING INDEX gauges_id;
SELECT cosmos_sink.add_route('gauges_staging', 'shop', 'gauges', 'site');
-- identity covers the keys but text columns could be TOASTed: refused with the fix
CREATE TABLE notes_staging (note_id bigint NOT NULL, site int NOT NULL, body text);
CREATE UNIQUE INDEX notes_key ON notes_staging (site, note_id);
ALTER TABLE notes_staging REPLICA IDENTITY USING INDEX notes_key;
SELECT cosmos_sink.add_route('notes_staging', 'shop', 'notes', 'site', id_column => 'note_id');
ALTER TABLE notes_staging REPLICA IDENTITY FULL;
SELECT id_column FROM cosmos_sink.add_route('notes_staging', 'shop', 'notes', 'site', id_column => 'note_id');

-- table missing, or not a plain table
SELECT cosmos_sink.add_route('no_such_table', 'shop', 'orders', 'customer_id');
CREATE VIEW orders_view AS SELECT * FROM orders_staging;
SELECT cosmos_sink.add_route('orders_view', 'shop', 'orders', 'customer_id');
CREATE TABLE parted (k int, id int, PRIMARY KEY (k, id)) PARTITION BY RANGE (k);
SELECT cosmos_sink.add_route('parted', 'shop', 'parted', 'k', id_column => 'id');
CREATE UNLOGGED TABLE unlogged_staging (id int PRIMARY KEY, k int);
SELECT cosmos_sink.add_route('unlogged_staging', 'shop', 'u', 'k');
CREATE TEMP TABLE temp_staging (id int PRIMARY KEY, k int);
SELECT cosmos_sink.add_route('temp_staging', 'shop', 't', 'k');
CREATE MATERIALIZED VIEW orders_mv AS SELECT * FROM orders_staging;
SELECT cosmos_sink.add_route('orders_mv', 'shop', 'mv', 'customer_id');

-- no id column: composite primary key, or no primary key, without id_column
CREATE TABLE composite_staging (a int, b int, k text, PRIMARY KEY (a, b));
SELECT cosmos_sink.add_route('composite_staging', 'shop', 'c', 'k');
CREATE TABLE nokey_staging (a int, k text);
SELECT cosmos_sink.add_route('nokey_staging', 'shop', 'n', 'k');

-- unknown columns
SELECT cosmos_sink.add_route('composite_staging', 'shop', 'c', 'kk', id_column => 'a');
SELECT cosmos_sink.add_route('composite_staging', 'shop', 'c', 'k', id_column => 'nope');
SELECT cosmos_sink.add_route('composite_staging', 'shop', 'c', 'ctid', id_column => 'a');

-- partition key: too many, none, twice, not a scalar
CREATE TABLE wide_staging (id int PRIMARY KEY, a int, b int, c int, d int, j jsonb, arr int[]);
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'w', '{a,b,c,d}');
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'w', '{}');
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'w', '{a,a}');
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'w', 'j');
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'w', 'arr');
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'w', NULL::text);

-- a column named "id" that is not the id column would be overwritten
CREATE TABLE idclash_staging (order_id int PRIMARY KEY, id text, k int);
SELECT cosmos_sink.add_route('idclash_staging', 'shop', 'x', 'k');

-- bad Cosmos names
SELECT cosmos_sink.add_route('wide_staging', 'shop', 'a/b', 'a');
SELECT cosmos_sink.add_route('wide_staging', '', 'w', 'a');

-- privileges: add_route is for the extension owner, and the table owner only
CREATE ROLE regress_cosmos_user;
CREATE TABLE owned_staging (id int PRIMARY KEY, k int);
SET ROLE regress_cosmos_user;
SELECT cosmos_sink.add_route('owned_staging', 'shop', 'o', 'k');
SELECT cosmos_sink.remove_route('orders_staging');
SELECT count(*) FROM cosmos_sink.routes;
RESET ROLE;
GRANT EXECUTE ON FUNCTION cosmos_sink.add_route(regclass, text, text, text, name) TO regress_cosmos_user;
SET ROLE regress_cosmos_user;
SELECT cosmos_sink.add_route('owned_staging', 'shop', 'o', 'k');
RESET ROLE;

-- remove_route
SELECT staging_table, container FROM cosmos_sink.remove_route('clicks_staging');
SELECT cosmos_sink.remove_route('clicks_staging');
SELECT staging_table FROM cosmos_sink.routes ORDER BY route_id;

-- a lost slot is never made again silently: add_route() and the worker stop,
-- recover() makes it again and re-sends every routed table
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLERRM, '[0-9A-F]+/[0-9A-F]+', 'X/X', 'g');  -- LSNs vary
END $$;
SELECT slot_name, confirm_limit >= '0/1' AS recorded FROM cosmos_sink.slot_checkpoint;
SELECT cosmos_sink.recover();
SELECT pg_drop_replication_slot('cosmos_sink');
CREATE TABLE late_staging (id int PRIMARY KEY, k int);
SELECT pg_temp.error_of($$SELECT cosmos_sink.add_route('late_staging', 'shop', 'late', 'k')$$);
SET ROLE regress_cosmos_user;
SELECT cosmos_sink.recover();
RESET ROLE;
BEGIN;
INSERT INTO late_staging VALUES (1, 1);
SELECT cosmos_sink.recover();
ROLLBACK;
SELECT cosmos_sink.recover();
SELECT count(*) AS slots FROM pg_replication_slots WHERE slot_name = 'cosmos_sink';
SELECT staging_table, finished_at IS NULL AS queued FROM cosmos_sink.resyncs ORDER BY staging_table::text;
SELECT cosmos_sink.add_route('late_staging', 'shop', 'late', 'k') IS NOT NULL AS routed;
-- a slot made again by hand starts past the record: refused too
SELECT pg_drop_replication_slot('cosmos_sink');
SELECT 1 FROM pg_create_logical_replication_slot('cosmos_sink', 'cosmos_sink');
UPDATE cosmos_sink.slot_checkpoint SET confirm_limit = '0/1';
SELECT cosmos_sink.remove_route('late_staging') IS NOT NULL AS removed;
CREATE TABLE late2_staging (id int PRIMARY KEY, k int);
SELECT pg_temp.error_of($$SELECT cosmos_sink.add_route('late2_staging', 'shop', 'late', 'k')$$);
SELECT cosmos_sink.recover() >= 0 AS recovered;
DELETE FROM cosmos_sink.resyncs;
DROP TABLE late_staging, late2_staging;

-- cleanup (the slot stays for the next suites)
SELECT cosmos_sink.remove_route(staging_table) IS NOT NULL FROM cosmos_sink.routes;
DROP TABLE orders_staging, events_staging, clicks_staging, metrics_staging, readings_staging,
  gauges_staging, notes_staging, parted, unlogged_staging, composite_staging, nokey_staging,
  wide_staging, idclash_staging, owned_staging CASCADE;
REVOKE ALL ON FUNCTION cosmos_sink.add_route(regclass, text, text, text, name) FROM regress_cosmos_user;
DROP ROLE regress_cosmos_user;

-- another database is refused with the setting to change
CREATE DATABASE regress_cosmos_other;
\c regress_cosmos_other
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;
CREATE TABLE t (id int PRIMARY KEY, k int);
SELECT cosmos_sink.add_route('t', 'shop', 't', 'k');
\c contrib_regression
DROP DATABASE regress_cosmos_other;
