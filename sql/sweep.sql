-- The sweep of recover(): the listing query, the parsing of its pages
-- (untrusted input), and sweep_step(), which deletes through the stream the
-- documents no routed row of the container has
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
SELECT count(*) >= 0 AS slot_reset FROM (SELECT pg_drop_replication_slot(slot_name)
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink') s;
DELETE FROM cosmos_sink.slot_checkpoint;
RESET client_min_messages;

CREATE SCHEMA cosmos_test_sweep;
SET search_path = cosmos_test_sweep, public;
CREATE FUNCTION list_query(text[]) RETURNS text
AS 'cosmos_sink', 'cosmos_test_list_query' LANGUAGE C STRICT;
CREATE FUNCTION parse_list(text, int, int DEFAULT 200) RETURNS text
AS 'cosmos_sink', 'cosmos_test_parse_list' LANGUAGE C STRICT;

-- column names go in as string literals: nothing in a name changes the query
SELECT list_query('{customer_id}');
SELECT list_query(ARRAY['tenant', 'we"ird] FROM c --', 'ü']);

-- a page: ids and keys re-emitted as JSON; what cannot be a row's is skipped
SELECT parse_list('{"_rid":"x","Documents":[{"id":"1","k0":"c1"},{"id":"2","k0":5.50},{"id":"3","k0":null},{"id":"4","k0":true}],"_count":4}', 1);
SELECT parse_list('{"Documents":[{"id":"a\"b","k0":"\u00e9\n","k1":0},{"id":"x","k0":"t","k1":-1e3}]}', 2);
SELECT parse_list('{"Documents":[{"id":1,"k0":"c"},{"k0":"c"},{"id":"","k0":"c"},{"id":"a/b","k0":"c"},{"id":"a#b","k0":"c"},{"id":"ok"}]}', 1);
SELECT parse_list('{"Documents":[{"id":"n","k0":{"a":1}},{"id":"m","k0":[1]},{"id":"o","k0":"c","other":{"deep":[1,2]}}]}', 1);
SELECT parse_list('{"Documents":[{"id":"' || repeat('i', 1024) || '","k0":"c"},{"id":"p","k0":"' || repeat('k', 2049) || '"}]}', 1);
SELECT parse_list('{"Documents":[{"id":"first","id":"second","k0":"a","k0":"b"}]}', 1);
SELECT parse_list('{"Documents":[]}', 1);
-- malformed pages fail as a whole
SELECT parse_list('[]', 1);
SELECT parse_list('{"_count":0}', 1);
SELECT parse_list('{"Documents":{}}', 1);
SELECT parse_list('{"Documents":"x"}', 1);
SELECT parse_list('{"Documents":[1]}', 1);
SELECT parse_list('{"Documents":[[]]}', 1);
SELECT parse_list('{"Documents":[{"id":"1"},{"id":"2"},{"id":"3"}]}', 1, 2);
SELECT parse_list('{"Documents":[{"id":"1"', 1);
SELECT parse_list(repeat('[', 300), 1);
RESET search_path;

-- Cosmos DB compares keys with numbers as doubles
SELECT cosmos_sink.same_cosmos_key('[10.5]', '[10.50]') AS num,
       cosmos_sink.same_cosmos_key('[5]', '["5"]') AS num_text,
       cosmos_sink.same_cosmos_key('["a", null]', '["a", null]') AS two,
       cosmos_sink.same_cosmos_key('["a"]', '["a", null]') AS lengths,
       cosmos_sink.same_cosmos_key('[1e400]', '[1]') AS huge;

-- two tables, one container: a document stays when either has its row
CREATE TABLE sw_a (id int PRIMARY KEY, k text NOT NULL, v text);
CREATE TABLE sw_b (id numeric PRIMARY KEY, k text NOT NULL);
CREATE TABLE sw_n (id text PRIMARY KEY, amount numeric(12,2) NOT NULL);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('sw_a', 'shop', 'swept', 'k');
SELECT count(*) FROM cosmos_sink.add_route('sw_b', 'shop', 'swept', 'k');
SELECT count(*) FROM cosmos_sink.add_route('sw_n', 'shop', 'amounts', 'amount');
RESET client_min_messages;
INSERT INTO sw_a VALUES (1, 'k1', 'kept'), (2, 'k-new', 'moved');
INSERT INTO sw_b VALUES (1000, 'k1'), (1.50, 'k2');
INSERT INTO sw_n VALUES ('n1', 10.50);
INSERT INTO cosmos_sink.resyncs (staging_table, requested_at, finished_at, sweep) VALUES
  ('sw_a', now() - interval '1 minute', now(), 'running'), ('sw_n', now(), now(), 'running');
SELECT 'init' FROM pg_create_logical_replication_slot('regress_sweep', 'cosmos_sink');

SELECT cosmos_sink.sweep_step('sw_a',
  ARRAY['1', '2', '1000', '1.50', '3', 'abc', '01', '1.5', 'x'],
  ARRAY['["k1"]', '["k-old"]', '["k1"]', '["k2"]', '["k3"]', '["k1"]', '["k1"]', '["k2"]', '[5]'],
  12) AS deleted;
SELECT data::jsonb->>'op' AS op, data::jsonb->>'table' AS tbl, data::jsonb->>'id' AS id,
       data::jsonb->'partition_key' AS pk
  FROM pg_logical_slot_get_changes('regress_sweep', NULL, NULL, 'format', 'json');
SELECT staging_table, sweep, docs_checked, docs_deleted FROM cosmos_sink.resyncs ORDER BY 1;
SELECT resync_progress FROM cosmos_sink.status;

-- a key as Cosmos DB answers it (10.5) is named as the plugin writes the row's (10.50)
SELECT cosmos_sink.sweep_step('sw_n', ARRAY['n1', 'n2'], ARRAY['[10.5]', '[7.5]'], 2) AS deleted;
SELECT data::jsonb->>'op' AS op, data::jsonb->>'id' AS id, data::jsonb->'partition_key' AS pk
  FROM pg_logical_slot_get_changes('regress_sweep', NULL, NULL, 'format', 'json');

-- the routes of a container must agree on the partition key
CREATE TABLE sw_c (id int PRIMARY KEY, other text NOT NULL);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('sw_c', 'shop', 'swept', 'other');
RESET client_min_messages;
SELECT cosmos_sink.sweep_step('sw_a', ARRAY['9'], ARRAY['["k9"]'], 1) AS deleted;
SELECT sweep FROM cosmos_sink.resyncs WHERE staging_table = 'sw_a'::regclass;

-- statements on the table (the lock, the lookups) run as its owner, who may do them
CREATE ROLE regress_sweep_owner;
ALTER TABLE sw_n OWNER TO regress_sweep_owner;
UPDATE cosmos_sink.resyncs SET sweep = 'running' WHERE staging_table = 'sw_n'::regclass;
SELECT cosmos_sink.sweep_step('sw_n', ARRAY['n1'], ARRAY['[10.5]'], 1) AS deleted;

-- recover(delete_missing) and who may call what
SELECT pg_get_function_arguments('cosmos_sink.recover'::regproc);
SET ROLE regress_sweep_owner;
SELECT cosmos_sink.sweep_step('sw_n', ARRAY['n1'], ARRAY['[10.5]'], 1);
SELECT cosmos_sink.recover(false);
RESET ROLE;

SELECT pg_drop_replication_slot('regress_sweep');
SET client_min_messages = warning;
DROP TABLE sw_a, sw_b, sw_c, sw_n;
DROP ROLE regress_sweep_owner;
DROP SCHEMA cosmos_test_sweep CASCADE;
RESET client_min_messages;
