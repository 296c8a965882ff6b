-- Hostile tenants: a table owner (alice) and a role with no privileges
-- (mallory) cannot use cosmos_sink to gain rights, forge writes, read what
-- they may not read, or stop the stream; ordinary roles are unaffected.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
SELECT count(*) >= 0 AS slot_reset FROM (SELECT pg_drop_replication_slot(slot_name)
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink') s;
DELETE FROM cosmos_sink.slot_checkpoint;
DROP ROLE IF EXISTS regress_alice;
DROP ROLE IF EXISTS regress_mallory;
DROP ROLE IF EXISTS regress_watcher;
RESET client_min_messages;

CREATE ROLE regress_alice LOGIN;
CREATE ROLE regress_mallory LOGIN;
CREATE ROLE regress_watcher LOGIN IN ROLE pg_monitor;
CREATE SCHEMA alice AUTHORIZATION regress_alice;
GRANT CREATE ON DATABASE contrib_regression TO regress_alice;

-- alice's staging table, with a type, a cast and a trigger of her own
SET ROLE regress_alice;
CREATE TYPE alice.mood AS ENUM ('happy', 'sad');
CREATE TABLE alice.log (who text, what text);
CREATE FUNCTION alice.mood_json(alice.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alice''s cast ran as %', current_user;
END $$;
CREATE CAST (alice.mood AS json) WITH FUNCTION alice.mood_json(alice.mood);
CREATE TABLE alice.orders (order_id int PRIMARY KEY, customer_id text NOT NULL,
                           mood alice.mood, note text);
CREATE FUNCTION alice.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alice.log VALUES (current_user, 'search_path=' || current_setting('search_path'));
    BEGIN
        ALTER ROLE regress_alice SUPERUSER;
        INSERT INTO alice.log VALUES (current_user, 'became superuser');
    EXCEPTION WHEN others THEN
        INSERT INTO alice.log VALUES (current_user, 'refused: SQLSTATE ' || sqlstate);
    END;
    RETURN NEW;
END $$;
CREATE TRIGGER escalate BEFORE UPDATE ON alice.orders FOR EACH ROW EXECUTE FUNCTION alice.escalate();
RESET ROLE;

SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('alice.orders', 'shop', 'orders', 'customer_id');
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('regress_security', 'cosmos_sink');
SELECT 'alice.orders'::regclass::oid AS alice_orders \gset
CREATE FUNCTION changes() RETURNS SETOF jsonb LANGUAGE sql AS $$
  SELECT data::jsonb - 'xid' - 'lsn' - 'commit_time'
    FROM pg_logical_slot_get_changes('regress_security', NULL, NULL, 'format', 'json')
$$;

-- 1. alice's cast to json never runs in decoding (a superuser's session):
-- her type is written with its output function; the stream goes on
SET ROLE regress_alice;
INSERT INTO alice.orders VALUES (1, 'c1', 'happy', 'one');
RESET ROLE;
SELECT * FROM changes();

-- a superuser's cast is used, as to_jsonb does; when it fails, that row
-- becomes an error record (a dead letter) and the next row still flows
CREATE TYPE public.grade AS ENUM ('a', 'b', 'fail');
CREATE FUNCTION public.grade_json(g public.grade) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    IF g = 'fail' THEN RAISE EXCEPTION 'grade % cannot be shown', g; END IF;
    RETURN json_build_object('grade', g::text);
END $$;
CREATE CAST (public.grade AS json) WITH FUNCTION public.grade_json(public.grade);
CREATE TABLE graded (id int PRIMARY KEY, pk text NOT NULL, g public.grade);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('graded', 'shop', 'graded', 'pk');
RESET client_min_messages;
INSERT INTO graded VALUES (1, 'p', 'a');
INSERT INTO graded VALUES (2, 'p', 'fail');
INSERT INTO graded VALUES (3, 'p', 'b');
SELECT * FROM changes();
SELECT to_jsonb(g) - 'id' AS to_jsonb FROM graded g WHERE id = 1;

-- 2. touches of resync() and retry_dead_letters() run as the table's owner,
-- restricted: alice's trigger cannot make her a superuser
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, error)
VALUES ('alice.orders', '0/1', 'upsert', '1', '["c1"]', 'refused');
SELECT cosmos_sink.retry_dead_letters('alice.orders');
SELECT cosmos_sink.resync('alice.orders');
SELECT cosmos_sink.resync_step('alice.orders', 10);
SELECT who, regexp_replace(what, ' at character \d+', '') AS what FROM alice.log;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_alice';
SELECT c->>'op' AS op, c->>'id' AS id FROM changes() c;
SELECT count(*) FROM cosmos_sink.resyncs WHERE finished_at IS NULL;
DELETE FROM cosmos_sink.resyncs;

-- 3. nobody can forge a write: logical messages are no command channel, and
-- the owner-only resend table is closed to others
SET ROLE regress_mallory;
SELECT 'sent' FROM pg_logical_emit_message(true, 'cosmos_sink', E'delete\n' || :alice_orders || E'\n["c1"]\n1');
SELECT 'sent' FROM pg_logical_emit_message(true, 'cosmos_sink', E'delete\nnot-json\n\n');
INSERT INTO cosmos_sink.resend_deletes VALUES (:alice_orders, '["c1"]', '1');
RESET ROLE;
SELECT * FROM changes();
-- a resend with values that are not valid becomes an error record, never a write
INSERT INTO cosmos_sink.resend_deletes VALUES ('alice.orders', 'not-json', '1'),
                                              ('alice.orders', '["c1","c2"]', '1'),
                                              ('alice.orders', '["c1"]', 'a/b');
DELETE FROM cosmos_sink.resend_deletes;
SELECT * FROM changes();
-- nor can anyone but the extension owner make an UPDATE that changes nothing
-- cost a write (cosmos_sink.skip_unchanged leaves it out): the marker table
-- is closed, a message or a look-alike table in another schema is no marker
SET ROLE regress_alice;
INSERT INTO cosmos_sink.resend_rows VALUES (:alice_orders);
SELECT 'sent' FROM pg_logical_emit_message(true, 'cosmos_sink', 'resend_rows ' || :alice_orders);
CREATE TABLE alice.resend_rows (staging_table regclass NOT NULL);
BEGIN;
INSERT INTO alice.resend_rows VALUES (:alice_orders);
UPDATE alice.orders SET note = note;
COMMIT;
DROP TABLE alice.resend_rows;
RESET ROLE;
SELECT * FROM changes();

-- 4. ordinary roles' DDL works in a database with cosmos_sink (the event
-- triggers run as the extension owner); routed tables are still guarded
SET ROLE regress_alice;
CREATE TABLE alice.scratch (a int, b text);
ALTER TABLE alice.scratch ADD COLUMN c int;
ALTER TABLE alice.scratch DROP COLUMN b;
DROP TABLE alice.scratch;
ALTER TABLE alice.orders ADD COLUMN extra int;
ALTER TABLE alice.orders DROP COLUMN customer_id;
CREATE SCHEMA alice_tmp;
CREATE TABLE alice_tmp.t (a int);
DROP SCHEMA alice_tmp CASCADE;
RESET ROLE;

-- 5. a row too large to become a document stops being built at the limit and
-- becomes an error record; the rows after it flow
SET ROLE regress_alice;
INSERT INTO alice.orders VALUES (2, 'c2', 'sad', repeat(E'\x01', 3 * 1024 * 1024));
INSERT INTO alice.orders VALUES (3, 'c3', 'sad', repeat(E'\x01', 400 * 1024));
INSERT INTO alice.orders VALUES (4, 'c4', 'sad', 'small');
INSERT INTO alice.orders VALUES (5, repeat('k', 70000), 'sad', 'huge key');
INSERT INTO alice.orders VALUES (6, 'c6', 'sad', 'after the huge key');
RESET ROLE;
SELECT c->>'op' AS op, c->>'id' AS id, length(c->>'document') AS doc_length,
       left(c->>'error', 120) AS error
  FROM changes() c;

-- 8. monitoring is for pg_monitor; every function closed to PUBLIC but those
-- meant for everyone
SET ROLE regress_mallory;
SELECT * FROM cosmos_sink.worker_status();
SELECT * FROM cosmos_sink.container_stats_internal();
SELECT * FROM cosmos_sink.status;
TRUNCATE cosmos_sink.dead_letters;
DELETE FROM cosmos_sink.routes;
SELECT cosmos_sink.as_table_owner(:alice_orders, 'SELECT 1');
RESET ROLE;
SELECT p.oid::regprocedure AS open_to_public
  FROM pg_proc p
 WHERE p.pronamespace = 'cosmos_sink'::regnamespace
   AND has_function_privilege('regress_mallory', p.oid, 'EXECUTE')
 ORDER BY 1::text;
SET ROLE regress_watcher;
SELECT state IS NOT NULL AS status_readable FROM cosmos_sink.status;
SELECT count(*) >= 0 AS stats_readable FROM cosmos_sink.container_stats;
RESET ROLE;
-- as_table_owner is for superusers even when granted
GRANT EXECUTE ON FUNCTION cosmos_sink.as_table_owner(regclass, text, text[]) TO regress_mallory;
SET ROLE regress_mallory;
SELECT cosmos_sink.as_table_owner(:alice_orders, 'SELECT 1');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cosmos_sink.as_table_owner(regclass, text, text[]) FROM regress_mallory;

-- 9. a dead letter's row data is shown only to roles that may read its table;
-- pg_monitor always sees the counts
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, document, error)
VALUES ('alice.orders', '0/2', 'upsert', '9', '["c9"]', '{"secret": 1}', 'refused');
SET ROLE regress_watcher;
SELECT count(*) FROM cosmos_sink.dead_letters;
SELECT waiting, total FROM cosmos_sink.dead_letter_counts WHERE staging_table = :alice_orders;
SELECT count(*) AS alice_rows_seen FROM cosmos_sink.readable_dead_letters WHERE staging_table = :alice_orders;
RESET ROLE;
GRANT USAGE ON SCHEMA alice TO regress_watcher;
GRANT SELECT ON alice.orders TO regress_watcher;
SET ROLE regress_watcher;
SELECT count(*) AS alice_rows_seen FROM cosmos_sink.readable_dead_letters WHERE staging_table = :alice_orders;
RESET ROLE;
ALTER TABLE alice.orders ENABLE ROW LEVEL SECURITY;
SET ROLE regress_watcher;
SELECT count(*) AS alice_rows_seen FROM cosmos_sink.readable_dead_letters WHERE staging_table = :alice_orders;
RESET ROLE;
ALTER TABLE alice.orders DISABLE ROW LEVEL SECURITY;
SET ROLE regress_alice;
SELECT cosmos_sink.can_read_rows('alice.orders') AS owner_reads;
RESET ROLE;

-- retry runs as the owner with row-level security off: a policy that would
-- hide the row (FORCE) fails that record instead of deleting the document; a
-- trigger that skips the touch fails it too; the other records go on
DELETE FROM cosmos_sink.dead_letters;
ALTER TABLE alice.orders ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, error)
VALUES ('alice.orders', '0/3', 'upsert', '4', '["c4"]', 'refused');
SELECT cosmos_sink.retry_dead_letters('alice.orders');
ALTER TABLE alice.orders NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
CREATE TRIGGER skip_touch BEFORE UPDATE ON alice.orders FOR EACH ROW
    EXECUTE FUNCTION suppress_redundant_updates_trigger();
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, error)
VALUES ('alice.orders', '0/4', 'upsert', '6', '["c6"]', 'refused'),
       ('alice.orders', '0/5', 'delete', '77', '["gone"]', 'refused');
SELECT cosmos_sink.retry_dead_letters('alice.orders');
DROP TRIGGER skip_touch ON alice.orders;
SELECT doc_id, retried_at IS NOT NULL AS retried, retry_error FROM cosmos_sink.dead_letters ORDER BY id;
SELECT c->>'op' AS op, c->>'id' AS id, c->'partition_key' AS pk FROM changes() c;

-- a resent delete carries its partition key as the plugin writes it
CREATE TABLE floats (id int PRIMARY KEY, k float8 NOT NULL, d date NOT NULL);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('floats', 'shop', 'floats', '{k,d}');
RESET client_min_messages;
INSERT INTO floats VALUES (1, 1e20, '2026-01-02');
DELETE FROM floats;
SELECT data::jsonb->>'op' AS op, substring(data from '"partition_key":(\[[^]]*\])') AS plugin_pk_text
  FROM pg_logical_slot_get_changes('regress_security', NULL, NULL, 'format', 'json');
DELETE FROM cosmos_sink.dead_letters;
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, error)
VALUES ('floats', '0/6', 'delete', '1', '[1e20, "2026-01-02"]', 'refused');
SELECT cosmos_sink.retry_dead_letters('floats');
SELECT data::jsonb->>'op' AS op, substring(data from '"partition_key":(\[[^]]*\])') AS resent_pk_text
  FROM pg_logical_slot_get_changes('regress_security', NULL, NULL, 'format', 'json');
SELECT count(*) FROM cosmos_sink.remove_route('floats');
DROP TABLE floats;

-- 10. remove_route() is as strict as add_route(), even when granted
GRANT EXECUTE ON FUNCTION cosmos_sink.remove_route(regclass) TO regress_mallory;
SET ROLE regress_mallory;
SELECT cosmos_sink.remove_route(:alice_orders);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION cosmos_sink.remove_route(regclass) FROM regress_mallory;

-- names that need quoting, control characters and the longest identifiers
-- come out as valid JSON
CREATE TABLE "we""ird
 name that is sixty-three bytes long, which is the limit" (
    "id" text PRIMARY KEY, "p""k" text NOT NULL);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('"we""ird
 name that is sixty-three bytes long, which is the limit"', 'shop', 'weird', 'p"k');
RESET client_min_messages;
INSERT INTO "we""ird
 name that is sixty-three bytes long, which is the limit" VALUES (E'tab\there', E'line\nbreak');
SELECT c->>'op' AS op, c->>'id' AS id, c->'partition_key' AS pk, c->>'table' AS tbl FROM changes() c;

-- clean up
SELECT pg_drop_replication_slot('regress_security');
SELECT count(*) FROM cosmos_sink.remove_route('alice.orders');
SELECT count(*) FROM cosmos_sink.remove_route('graded');
SELECT count(*) FROM cosmos_sink.remove_route('"we""ird
 name that is sixty-three bytes long, which is the limit"');
DROP TABLE graded, "we""ird
 name that is sixty-three bytes long, which is the limit";
DROP CAST (public.grade AS json);
DROP FUNCTION public.grade_json(public.grade);
DROP TYPE public.grade;
DROP FUNCTION changes();
DELETE FROM cosmos_sink.dead_letters;
DROP SCHEMA alice CASCADE;
REVOKE CREATE ON DATABASE contrib_regression FROM regress_alice;
DROP ROLE regress_alice;
DROP ROLE regress_mallory;
DROP ROLE regress_watcher;
