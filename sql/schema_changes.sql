-- Schema changes of a routed table while it streams: documents take the new
-- shape from the right LSN; the id and partition key columns are guarded;
-- dropping the table removes its route
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
CREATE TABLE sc_staging (order_id bigint PRIMARY KEY, customer_id text NOT NULL, amount int, note text);
SELECT count(*) FROM cosmos_sink.add_route('sc_staging', 'shop', 'orders', 'customer_id');
RESET client_min_messages;
SELECT 'init' FROM pg_create_logical_replication_slot('regress_sc', 'cosmos_sink');

CREATE FUNCTION docs() RETURNS SETOF jsonb LANGUAGE sql AS $$
  SELECT data::jsonb->'document'
    FROM pg_logical_slot_get_changes('regress_sc', NULL, NULL, 'format', 'json')
$$;

INSERT INTO sc_staging VALUES (1, 'c1', 10, 'first');
ALTER TABLE sc_staging ADD COLUMN region text DEFAULT 'eu';
INSERT INTO sc_staging VALUES (2, 'c2', 20, 'second', 'us');
ALTER TABLE sc_staging DROP COLUMN note;
INSERT INTO sc_staging VALUES (3, 'c3', 30, 'apac');
ALTER TABLE sc_staging RENAME COLUMN amount TO total;
UPDATE sc_staging SET total = total + 1 WHERE order_id = 1;
ALTER TABLE sc_staging ALTER COLUMN total TYPE numeric(10,2);
INSERT INTO sc_staging VALUES (4, 'c4', 40.5, 'eu');
-- each document has the shape its table had when the change was made
SELECT * FROM docs();

-- one transaction mixing DDL and rows: the shape changes at the right change
BEGIN;
INSERT INTO sc_staging VALUES (5, 'c5', 50, 'eu');
ALTER TABLE sc_staging ADD COLUMN flag bool DEFAULT true;
INSERT INTO sc_staging VALUES (6, 'c6', 60, 'eu', false);
COMMIT;
SELECT * FROM docs();

-- the route's id and partition key columns are guarded
ALTER TABLE sc_staging RENAME COLUMN customer_id TO cust;
ALTER TABLE sc_staging DROP COLUMN customer_id;
ALTER TABLE sc_staging RENAME COLUMN order_id TO oid2;
-- so are their types (their text is the documents' ids and keys) and the
-- replica identity that logs them; other columns may still change
ALTER TABLE sc_staging ALTER COLUMN customer_id TYPE varchar(20);
ALTER TABLE sc_staging ALTER COLUMN order_id TYPE numeric;
ALTER TABLE sc_staging REPLICA IDENTITY DEFAULT;
ALTER TABLE sc_staging REPLICA IDENTITY NOTHING;
ALTER TABLE sc_staging ALTER COLUMN region TYPE varchar(10);
SELECT * FROM docs();

-- an ALTER TABLE of a parent that recurses into a routed partition is guarded too
CREATE TABLE sc_parent (order_id bigint NOT NULL, customer_id text NOT NULL, v int)
    PARTITION BY LIST (customer_id);
CREATE TABLE sc_part PARTITION OF sc_parent FOR VALUES IN ('a');
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('sc_part', 'shop', 'parts', 'customer_id', 'order_id');
RESET client_min_messages;
ALTER TABLE sc_parent RENAME COLUMN order_id TO oid2;
ALTER TABLE sc_parent ALTER COLUMN order_id TYPE numeric;
ALTER TABLE sc_parent ADD COLUMN extra int;
SELECT relname, relreplident FROM pg_class WHERE relname = 'sc_part';
DROP TABLE sc_parent;

-- dropping the table removes its route (and later changes of a new table of that name are not routed)
DROP TABLE sc_staging;
SELECT count(*) AS routes_left FROM cosmos_sink.routes;
CREATE TABLE sc_staging (order_id bigint PRIMARY KEY, customer_id text NOT NULL);
INSERT INTO sc_staging VALUES (7, 'c7');
SELECT count(*) AS records FROM docs();

SELECT pg_drop_replication_slot('regress_sc');
DROP TABLE sc_staging;
DROP FUNCTION docs();
