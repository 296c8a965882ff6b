-- Output plugin: what each kind of change becomes, committed changes only
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;
-- start without the worker's slot, so that add_route() creates it here
SELECT count(*) >= 0 AS slot_reset FROM (SELECT pg_drop_replication_slot(slot_name)
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink') s;
DELETE FROM cosmos_sink.slot_checkpoint;

CREATE TABLE orders_staging (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
                             amount numeric(12,2), note text);
CREATE TABLE events_staging (tenant text NOT NULL, user_id int NOT NULL, event_id int PRIMARY KEY, kind text);
CREATE TABLE other_table (id int PRIMARY KEY, v text);

SELECT 'init' FROM pg_create_logical_replication_slot('regress_plugin', 'cosmos_sink');

-- the changes of a table before it is routed are not emitted
INSERT INTO orders_staging VALUES (0, 'c0', 0, 'before the route');

SELECT count(*) FROM cosmos_sink.add_route('orders_staging', 'shop', 'orders', 'customer_id');
SELECT count(*) FROM cosmos_sink.add_route('events_staging', 'shop', 'events', '{tenant,user_id}');

-- Shows the changes since the last call, without the per-run xid/lsn/commit_time
CREATE FUNCTION changes() RETURNS SETOF jsonb LANGUAGE sql AS $$
  SELECT data::jsonb - 'xid' - 'lsn' - 'commit_time'
    FROM pg_logical_slot_get_changes('regress_plugin', NULL, NULL, 'format', 'json')
$$;

-- insert, update, delete
INSERT INTO orders_staging VALUES (1, 'c1', 10.50, 'first'), (2, 'c2', 20, NULL);
UPDATE orders_staging SET amount = 11 WHERE order_id = 1;
DELETE FROM orders_staging WHERE order_id = 2;
SELECT * FROM changes();

-- every record carries xid, lsn and commit time
INSERT INTO orders_staging VALUES (3, 'c3', 30, 'meta');
SELECT data::jsonb ? 'xid' AS xid, (data::jsonb->>'lsn')::pg_lsn = lsn AS lsn_matches,
       (data::jsonb->>'commit_time')::timestamptz <= now() AS commit_time
  FROM pg_logical_slot_get_changes('regress_plugin', NULL, NULL, 'format', 'json');

-- UPDATE that moves the id: delete the old document, upsert the new one
UPDATE orders_staging SET order_id = 4 WHERE order_id = 3;
-- UPDATE that moves the partition key
UPDATE orders_staging SET customer_id = 'c9' WHERE order_id = 4;
SELECT * FROM changes();

-- hierarchical key, a second routed table, and an unrouted table in one transaction
BEGIN;
INSERT INTO events_staging VALUES ('t1', 7, 100, 'click');
INSERT INTO other_table VALUES (1, 'not routed');
UPDATE orders_staging SET note = 'same transaction' WHERE order_id = 1;
UPDATE events_staging SET user_id = 8 WHERE event_id = 100;
COMMIT;
SELECT * FROM changes();

-- rolled-back transaction and rolled-back subtransaction: absent
BEGIN;
INSERT INTO orders_staging VALUES (50, 'c50', 1, 'rolled back');
ROLLBACK;
BEGIN;
INSERT INTO orders_staging VALUES (51, 'c51', 1, 'kept');
SAVEPOINT s1;
INSERT INTO orders_staging VALUES (52, 'c52', 1, 'rolled back to savepoint');
UPDATE orders_staging SET note = 'rolled back to savepoint' WHERE order_id = 51;
ROLLBACK TO SAVEPOINT s1;
RELEASE SAVEPOINT s1;
COMMIT;
SELECT * FROM changes();

-- prepared transaction: nothing at PREPARE, everything at COMMIT PREPARED
BEGIN;
INSERT INTO orders_staging VALUES (60, 'c60', 6, 'prepared');
PREPARE TRANSACTION 'regress_cosmos_2pc';
SELECT * FROM changes();
COMMIT PREPARED 'regress_cosmos_2pc';
SELECT * FROM changes();
BEGIN;
INSERT INTO orders_staging VALUES (61, 'c61', 6, 'prepared then rolled back');
PREPARE TRANSACTION 'regress_cosmos_2pc_rb';
ROLLBACK PREPARED 'regress_cosmos_2pc_rb';
SELECT * FROM changes();

-- TRUNCATE keeps the documents: a warning record, no document change
TRUNCATE orders_staging;
SELECT * FROM changes();

-- UPDATE that leaves a TOASTed value unchanged still carries the real value
ALTER TABLE orders_staging ALTER note SET STORAGE EXTERNAL;
INSERT INTO orders_staging
  SELECT 70, 'c70', 7, string_agg(md5(i::text), '') FROM generate_series(1, 400) i;
SELECT pg_relation_size(reltoastrelid) > 0 AS stored_out_of_line
  FROM pg_class WHERE oid = 'orders_staging'::regclass;
SELECT * FROM changes() \gset ignored_
UPDATE orders_staging SET amount = 8 WHERE order_id = 70;
SELECT c->>'op' AS op, c->'document'->>'amount' AS amount,
       c->'document'->>'note' = (SELECT note FROM orders_staging WHERE order_id = 70) AS note_is_real,
       length(c->'document'->>'note') AS note_length
  FROM changes() c;
-- without a whole old row the value is nowhere in WAL: an error record, never a
-- placeholder (the DDL guard refuses this identity; with event triggers off it
-- can still happen)
SET session_replication_role = replica;
ALTER TABLE orders_staging REPLICA IDENTITY DEFAULT;
RESET session_replication_role;
UPDATE orders_staging SET amount = 9 WHERE order_id = 70;
SELECT c->>'op' AS op, c->>'id' AS id, c->>'error' AS error, c ? 'document' AS has_document FROM changes() c;
ALTER TABLE orders_staging REPLICA IDENTITY FULL;

-- removing the route stops the records at that point of the stream
INSERT INTO orders_staging VALUES (80, 'c80', 1, 'routed');
SELECT count(*) FROM cosmos_sink.remove_route('orders_staging');
INSERT INTO orders_staging VALUES (81, 'c81', 1, 'no longer routed');
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;

-- the worker's binary format carries the same records, plus commit markers
SELECT count(*) FROM cosmos_sink.add_route('orders_staging', 'shop', 'orders', 'customer_id');
INSERT INTO orders_staging VALUES (90, 'c90', 9, 'binary');
DELETE FROM orders_staging WHERE order_id = 90;
SELECT r - 'end_lsn' - 'commit_time' - 'xid' - 'route_id' AS record,
       (r->>'end_lsn')::pg_lsn = lsn AS end_lsn_is_row_lsn
  FROM pg_logical_slot_peek_binary_changes('regress_plugin', NULL, NULL, 'format', 'binary') b,
       cosmos_sink.decode_record(b.data) r;
-- same ids and operations as format json
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;
SELECT cosmos_sink.decode_record('\x00'::bytea);

-- options
SELECT * FROM pg_logical_slot_peek_changes('regress_plugin', NULL, NULL, 'format', 'xml');
SELECT * FROM pg_logical_slot_peek_changes('regress_plugin', NULL, NULL, 'pretty', 'on');

-- an UPDATE that leaves an out-of-line id and partition key unchanged: their
-- values come from the old row in WAL, never from the TOAST table (which no
-- longer has them once the key changed again and the table was vacuumed)
CREATE TABLE toasted_keys (k int PRIMARY KEY, id text NOT NULL, pk text NOT NULL, v int);
ALTER TABLE toasted_keys ALTER id SET STORAGE EXTERNAL, ALTER pk SET STORAGE EXTERNAL;
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('toasted_keys', 'shop', 'toasted', 'pk', 'id');
RESET client_min_messages;
SELECT * FROM changes();
INSERT INTO toasted_keys VALUES (1, repeat('i', 3000), repeat('p', 3000), 1);
UPDATE toasted_keys SET v = 2;
UPDATE toasted_keys SET id = 'short', pk = 'short';
VACUUM toasted_keys;
SELECT c->>'op' AS op, length(c->>'id') AS id_length, length(c->'partition_key'->>0) AS pk_length,
       c->'document'->>'v' AS v
  FROM changes() c;
SELECT count(*) FROM cosmos_sink.remove_route('toasted_keys');
DROP TABLE toasted_keys;

-- An UPDATE that changes nothing (cosmos_sink.skip_unchanged, on by default)
-- emits nothing: every column compared byte for byte with the old row, which
-- REPLICA IDENTITY FULL logs whole; NULLs equal NULLs
SHOW cosmos_sink.skip_unchanged;
INSERT INTO orders_staging VALUES (100, 'c100', 1.50, NULL), (101, 'c101', 2, 'x');
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;
UPDATE orders_staging SET amount = amount, note = note WHERE order_id IN (100, 101);
-- Flink's replay: the same values again through its upsert (1.5 is stored as 1.50)
INSERT INTO orders_staging VALUES (100, 'c100', 1.5, NULL), (101, 'c101', 2, 'x')
  ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
    amount = EXCLUDED.amount, note = EXCLUDED.note;
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;
-- one column differs (a NULL that gets a value, a value that becomes NULL): sent
UPDATE orders_staging SET note = 'now set' WHERE order_id = 100;
UPDATE orders_staging SET note = NULL WHERE order_id = 101;
UPDATE orders_staging SET amount = 3 WHERE order_id = 101;
SELECT c->>'op' AS op, c->>'id' AS id, c->'document'->>'note' AS note, c->'document'->>'amount' AS amount
  FROM changes() c;
-- an unchanged out-of-line TOASTed value is unchanged (taken from the old row)
UPDATE orders_staging SET note = note, amount = amount WHERE order_id = 70;
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;
UPDATE orders_staging SET note = note || '!' WHERE order_id = 70;
SELECT c->>'op' AS op, c->>'id' AS id, right(c->'document'->>'note', 1) AS note_ends FROM changes() c;
-- a dropped column is not part of the row any more: one record, from before the drop
ALTER TABLE orders_staging ADD COLUMN extra int;
UPDATE orders_staging SET extra = 1 WHERE order_id = 100;
ALTER TABLE orders_staging DROP COLUMN extra;
UPDATE orders_staging SET amount = amount WHERE order_id = 100;
SELECT c->>'op' AS op, c->>'id' AS id, c->'document' ? 'extra' AS has_extra FROM changes() c;
-- the option skip_unchanged overrides the setting for this session's slot
UPDATE orders_staging SET amount = amount WHERE order_id = 100;
SELECT data::jsonb->>'op' AS op, data::jsonb->>'id' AS id
  FROM pg_logical_slot_peek_changes('regress_plugin', NULL, NULL, 'format', 'json', 'skip_unchanged', 'off');
SELECT count(*) AS records
  FROM pg_logical_slot_peek_changes('regress_plugin', NULL, NULL, 'format', 'json', 'skip_unchanged', 'on');
-- the worker's format counts it: a skip record (no commit record, nothing to acknowledge)
SELECT r - 'route_id' AS record
  FROM pg_logical_slot_peek_binary_changes('regress_plugin', NULL, NULL, 'format', 'binary') b,
       cosmos_sink.decode_record(b.data) r;
SELECT * FROM pg_logical_slot_peek_changes('regress_plugin', NULL, NULL, 'skip_unchanged', 'maybe');
SELECT * FROM pg_logical_slot_peek_changes('regress_plugin', NULL, NULL, 'skip_unchanged', 'on', 'skip_unchanged', 'off');
SELECT * FROM changes();
-- resync() and retry_dead_letters() touches are marked (the owner-only table
-- resend_rows, in the same transaction, before the touch): sent, for that
-- table only, in that transaction only
BEGIN;
INSERT INTO cosmos_sink.resend_rows VALUES ('orders_staging');
DELETE FROM cosmos_sink.resend_rows;
UPDATE orders_staging SET amount = amount WHERE order_id = 100;
UPDATE events_staging SET kind = kind;
COMMIT;
UPDATE orders_staging SET amount = amount WHERE order_id = 101;
SELECT c->>'op' AS op, c->>'table' AS table, c->>'id' AS id FROM changes() c;
SELECT cosmos_sink.resync('orders_staging');
SELECT cosmos_sink.resync_step('orders_staging', 2);
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c ORDER BY 2;
DELETE FROM cosmos_sink.resyncs;
-- a stored generated column follows its inputs; unchanged inputs, unchanged row
CREATE TABLE generated_staging (k int PRIMARY KEY, pk text NOT NULL, a int,
                                doubled int GENERATED ALWAYS AS (a * 2) STORED);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('generated_staging', 'shop', 'generated', 'pk');
RESET client_min_messages;
INSERT INTO generated_staging VALUES (1, 'p', 1);
UPDATE generated_staging SET a = 1;
UPDATE generated_staging SET a = 2;
SELECT c->>'op' AS op, c->'document'->>'doubled' AS doubled FROM changes() c;
SELECT count(*) FROM cosmos_sink.remove_route('generated_staging');
DROP TABLE generated_staging;
-- without the whole old row (an identity that logs only the key) nothing is
-- known to be unchanged: always sent
CREATE TABLE keyed_staging (k int PRIMARY KEY, v int);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('keyed_staging', 'shop', 'keyed', 'k');
RESET client_min_messages;
SELECT relreplident FROM pg_class WHERE oid = 'keyed_staging'::regclass;
INSERT INTO keyed_staging VALUES (1, 1);
UPDATE keyed_staging SET v = v;
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;
SELECT count(*) FROM cosmos_sink.remove_route('keyed_staging');
DROP TABLE keyed_staging;

SELECT pg_drop_replication_slot('regress_plugin');
SELECT count(*) FROM cosmos_sink.remove_route('orders_staging');
SELECT count(*) FROM cosmos_sink.remove_route('events_staging');
DROP TABLE orders_staging, events_staging, other_table;
DROP FUNCTION changes();
