-- The status view, pause() and resume(), with the worker disabled
-- (cosmos_sink.enabled = off in the test instance: it leaves the slot alone)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;

-- the worker starts once this database exists; wait for it
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM cosmos_sink.status WHERE state = 'paused');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT state, worker_pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'cosmos_sink worker') AS worker_pid_matches,
       slot_name, in_flight_requests, last_error
  FROM cosmos_sink.status;

-- the columns the manual promises
SELECT string_agg(attname, ', ' ORDER BY attnum) AS status_columns
  FROM pg_attribute WHERE attrelid = 'cosmos_sink.status'::regclass AND attnum > 0;

SELECT string_agg(attname, ', ' ORDER BY attnum) AS container_stats_columns
  FROM pg_attribute WHERE attrelid = 'cosmos_sink.container_stats'::regclass AND attnum > 0;

-- the RU budget: a number of RU/s (0: none) or 'auto' with a share of the provisioned throughput
SELECT current_setting('cosmos_sink.max_ru_per_second') AS max_ru_per_second,
       current_setting('cosmos_sink.ru_share') AS ru_share;
ALTER SYSTEM SET cosmos_sink.max_ru_per_second = 'lots';
ALTER SYSTEM SET cosmos_sink.max_ru_per_second = '-5';
ALTER SYSTEM SET cosmos_sink.max_ru_per_second = 'AUTO';
ALTER SYSTEM SET cosmos_sink.max_ru_per_second = 2500;
ALTER SYSTEM SET cosmos_sink.ru_share = 1.5;
ALTER SYSTEM RESET cosmos_sink.max_ru_per_second;
ALTER SYSTEM RESET cosmos_sink.ru_share;

-- a route without traffic yet shows zeros; reset_stats() is for the owner
CREATE TABLE stats_staging (id int PRIMARY KEY, k int);
SET client_min_messages = warning;
SELECT count(*) FROM cosmos_sink.add_route('stats_staging', 'shop', 'stats', 'k');
RESET client_min_messages;
SELECT staging_table, upserts, deletes, requests, ru_total, p99_ms, stats_reset IS NULL AS never_counted
  FROM cosmos_sink.container_stats;
SELECT cosmos_sink.reset_stats();
SELECT count(*) FROM cosmos_sink.remove_route('stats_staging');
DROP TABLE stats_staging;

-- pause() and resume() flip the switch the worker obeys
SELECT cosmos_sink.pause();
SELECT paused FROM cosmos_sink.worker_status();
SELECT cosmos_sink.resume();
SELECT paused FROM cosmos_sink.worker_status();

-- monitoring roles read the views; only the extension owner steers the worker
CREATE ROLE regress_monitor IN ROLE pg_monitor;
CREATE ROLE regress_nobody;
SET ROLE regress_monitor;
SELECT count(*) AS rows FROM cosmos_sink.status;
SELECT count(*) AS rows FROM cosmos_sink.routes WHERE false;
SELECT count(*) AS rows FROM cosmos_sink.container_stats WHERE false;
SELECT cosmos_sink.pause();
SELECT cosmos_sink.reset_stats();
SET ROLE regress_nobody;
SELECT count(*) FROM cosmos_sink.status;
SELECT count(*) FROM cosmos_sink.dead_letters;
RESET ROLE;
DROP ROLE regress_monitor, regress_nobody;
