-- retry_dead_letters(): existing rows are re-sent from their current state,
-- rows that are gone get their delete re-sent; both in commit order
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
SELECT count(*) >= 0 AS slot_reset FROM (SELECT pg_drop_replication_slot(slot_name)
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink') s;
DELETE FROM cosmos_sink.slot_checkpoint;
RESET client_min_messages;

CREATE TABLE dl_staging (order_id bigint PRIMARY KEY, customer_id text NOT NULL, note text);
CREATE TABLE dl_other (order_id bigint PRIMARY KEY, customer_id text NOT NULL);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('dl_staging', 'shop', 'orders', 'customer_id');
SELECT count(*) FROM cosmos_sink.add_route('dl_other', 'shop', 'other', 'customer_id');
RESET client_min_messages;
INSERT INTO dl_staging VALUES (1, 'c1', 'still here'), (2, 'c2', 'will be gone');
INSERT INTO dl_other VALUES (7, 'c7');
DELETE FROM dl_staging WHERE order_id = 2;

-- records the worker parked (as it would write them)
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key,
                                      document, http_status, sub_status, error) VALUES
  ('dl_staging', '0/1', 'upsert', '1', '["c1"]', '{"order_id": 1}', 400, 0, 'refused'),
  ('dl_staging', '0/2', 'upsert', '2', '["c2"]', '{"order_id": 2}', 400, 0, 'refused'),
  ('dl_other',   '0/3', 'delete', '7', '["c7"]', NULL, 409, 0, 'refused'),
  ('dl_staging', '0/4', 'error', NULL, NULL, NULL, NULL, NULL, 'no id: cannot be retried');

SELECT 'init' FROM pg_create_logical_replication_slot('regress_dl', 'cosmos_sink');

-- only one table
SELECT cosmos_sink.retry_dead_letters('dl_other');
SELECT data::jsonb - 'xid' - 'lsn' - 'commit_time' - 'document' AS record
  FROM pg_logical_slot_get_changes('regress_dl', NULL, NULL, 'format', 'json');

-- all the rest: row 1 is re-sent as it is now, row 2 (gone) as a delete
UPDATE dl_staging SET note = 'changed since' WHERE order_id = 1;
SELECT pg_logical_slot_get_changes('regress_dl', NULL, NULL, 'format', 'json') IS NOT NULL AS skipped;
SELECT cosmos_sink.retry_dead_letters();
SELECT data::jsonb - 'xid' - 'lsn' - 'commit_time' AS record
  FROM pg_logical_slot_get_changes('regress_dl', NULL, NULL, 'format', 'json');
SELECT operation, doc_id, retried_at IS NOT NULL AS retried FROM cosmos_sink.dead_letters ORDER BY id;

-- a parked delete of a row that now lives under another partition key: the
-- old document is deleted, the row re-sent under its new key
INSERT INTO dl_staging VALUES (3, 'c3-new', 'moved');
SELECT pg_logical_slot_get_changes('regress_dl', NULL, NULL, 'format', 'json') IS NOT NULL AS skipped;
INSERT INTO cosmos_sink.dead_letters (staging_table, lsn, operation, doc_id, partition_key, error)
VALUES ('dl_staging', '0/5', 'delete', '3', '["c3-old"]', 'refused');
SELECT cosmos_sink.retry_dead_letters('dl_staging');
SELECT data::jsonb->>'op' AS op, data::jsonb->>'id' AS id, data::jsonb->'partition_key' AS pk
  FROM pg_logical_slot_get_changes('regress_dl', NULL, NULL, 'format', 'json');

-- nothing left to retry
SELECT cosmos_sink.retry_dead_letters();

-- not for everyone
CREATE ROLE regress_dl_user;
SET ROLE regress_dl_user;
SELECT cosmos_sink.retry_dead_letters();
RESET ROLE;
DROP ROLE regress_dl_user;

SELECT pg_drop_replication_slot('regress_dl');
SELECT count(*) FROM cosmos_sink.remove_route('dl_staging');
SELECT count(*) FROM cosmos_sink.remove_route('dl_other');
TRUNCATE cosmos_sink.dead_letters;
DROP TABLE dl_staging, dl_other;
