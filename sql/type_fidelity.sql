-- Type fidelity: every decoded document equals to_jsonb(row) || {"id": id::text}
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;
-- start without the worker's slot, so that add_route() creates it here
SELECT count(*) >= 0 AS slot_reset FROM (SELECT pg_drop_replication_slot(slot_name)
  FROM pg_replication_slots WHERE slot_name = 'cosmos_sink') s;
DELETE FROM cosmos_sink.slot_checkpoint;

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);
CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 100);
CREATE TYPE address AS (street text, zip int, tags text[]);

CREATE TABLE types_staging (
  id           bigint PRIMARY KEY,
  pk           text NOT NULL,
  c_int2       int2,
  c_int4       int4,
  c_int8       int8,
  c_numeric    numeric,
  c_numeric_s  numeric(20, 6),
  c_float4     float4,
  c_float8     float8,
  c_bool       bool,
  c_text       text,
  c_varchar    varchar(40),
  c_char       char(5),
  c_qchar      "char",
  c_name       name,
  c_uuid       uuid,
  c_date       date,
  c_time       time,
  c_timetz     timetz,
  c_timestamp  timestamp,
  c_timestamptz timestamptz,
  c_interval   interval,
  c_bytea      bytea,
  c_json       json,
  c_jsonb      jsonb,
  c_int_array  int[],
  c_text_2d    text[][],
  c_empty_arr  int[],
  c_enum       mood,
  c_enum_arr   mood[],
  c_domain     positive_int,
  c_domain_txt short_text,
  c_inet       inet,
  c_cidr       cidr,
  c_macaddr    macaddr,
  c_money      money,
  c_point      point,
  c_tsvector   tsvector,
  c_int4range  int4range,
  c_tstzrange  tstzrange,
  c_composite  address,
  c_comp_arr   address[],
  c_bit        bit(8),
  c_varbit     varbit,
  c_oid        oid,
  c_xml        xml
);

SELECT 'init' FROM pg_create_logical_replication_slot('regress_types', 'cosmos_sink');
SELECT count(*) FROM cosmos_sink.add_route('types_staging', 'shop', 'types', 'pk');

-- 1: ordinary values; 2: edge values; 3: every column NULL; 4: odd text
INSERT INTO types_staging VALUES
 (1, 'p1', 1, 2, 3, 12.5, 1.000001, 1.5, 2.25, true, 'plain', 'varchar', 'ab', 'x', 'aname',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '13:14:15.123456', '13:14:15+02',
  '2024-02-29 13:14:15.5', '2024-02-29 13:14:15.5+00', '1 year 2 mons 3 days 04:05:06.7',
  '\xdeadbeef', '{"a": 1, "b": [1, 2, {"c": null}]}', '{"x": {"y": [1, 2.5, "z", true, null]}}',
  '{1,NULL,3}', '{{a,b},{c,NULL}}', '{}', 'happy', '{sad,happy}', 42, 'short',
  '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34, '(1.5,2)', 'a fat cat sat',
  '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)', ROW('Main St', 12345, '{x,y}'),
  ARRAY[ROW('A', 1, NULL)::address, NULL], B'10101010', B'101', 12345, '<a>b</a>'),
 (2, 'p2', -32768, -2147483648, -9223372036854775808, 'NaN',
  -99999999999999.999999, 'Infinity', '-Infinity', false,
  repeat('long ', 1000), '', ' ', ' ', '', '00000000-0000-0000-0000-000000000000',
  'infinity', '00:00:00', '23:59:59.999999-12', '-infinity', 'infinity', '-1 days -00:00:01',
  '\x', '[]', '[]', '{}', '{}', '{}', 'sad', '{}', 1, '', '::1', '::/0', 'ff:ff:ff:ff:ff:ff',
  -92233720368547758.08, '(-0,0)', '', 'empty', 'empty', ROW(NULL, NULL, NULL), '{}',
  B'00000000', B'', 0, ''),
 (3, 'p3', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'p4', 0, 0, 0, 1e100, 0.5, 'NaN', 1e300, NULL,
  E'quote " backslash \\ newline \n tab \t cr \r bell \x07 emoji 😀 accents éè 中文',
  E'\\"', 'é', 'é', 'n"m', NULL, '0001-01-01 BC', '24:00:00', '00:00:00+14',
  '0001-01-01 00:00:00 BC', '1970-01-01 00:00:00+00', '0', '\x00ff', '{"dup": 1, "dup": 2}',
  '{"nested": {"deeper": {"deepest": [[[]]]}}, "unicode": "\u00e9\ud83d\ude00"}',
  '{-1,0,1}', '{{"with \"quote"},{"with\\backslash"}}', '{}', 'ok', '{ok,NULL}', 7,
  E'line\nbreak', '2001:db8::1', '2001:db8::/32', '00:00:00:00:00:00', 0, '(1e300,-1e-300)',
  E'''quoted'' lexeme', '(,)', '(,)', ROW(E'a"b\\c', -1, ARRAY[NULL, 'é']), NULL,
  B'11111111', B'1', 4294967295, '<?xml version="1.0"?><r/>');
-- arrays past 1024 elements are visited one at a time: the same JSON
INSERT INTO types_staging (id, pk, c_int_array, c_text_2d, c_comp_arr)
SELECT 6, 'p6', ARRAY(SELECT CASE WHEN g % 100 = 0 THEN NULL ELSE g END FROM generate_series(1, 1500) g),
       (SELECT array_agg(ARRAY(SELECT chr(65 + (i + j) % 26) FROM generate_series(1, 40) j))
          FROM generate_series(1, 40) i),
       ARRAY(SELECT ROW('s' || g, g, ARRAY['t'])::address FROM generate_series(1, 1100) g);

-- how many column types the table covers
SELECT count(DISTINCT atttypid) >= 30 AS at_least_30_types
  FROM pg_attribute WHERE attrelid = 'types_staging'::regclass AND attnum > 0;

-- jsonb equality of every decoded document with to_jsonb(row) || id, per row
WITH decoded AS (
  SELECT (data::jsonb->>'id')::bigint AS id, data::jsonb->'document' AS doc,
         data::jsonb->'partition_key' AS pk, data AS raw
    FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL, 'format', 'json')
)
SELECT t.id,
       d.doc = to_jsonb(t) || jsonb_build_object('id', t.id::text) AS doc_equal,
       d.pk = jsonb_build_array(t.pk) AS pk_equal,
       d.raw::json IS NOT NULL AS valid_json
  FROM types_staging t JOIN decoded d USING (id) ORDER BY t.id;

-- show any column that differs (none expected)
WITH decoded AS (
  SELECT (data::jsonb->>'id')::bigint AS id, data::jsonb->'document' AS doc
    FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL, 'format', 'json')
)
SELECT t.id, e.key, e.value AS expected, d.doc->e.key AS decoded
  FROM types_staging t JOIN decoded d USING (id),
       jsonb_each(to_jsonb(t) || jsonb_build_object('id', t.id::text)) e
 WHERE d.doc->e.key IS DISTINCT FROM e.value
 ORDER BY 1, 2;

-- documents have no key beyond the columns and id
WITH decoded AS (
  SELECT data::jsonb->'document' AS doc
    FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL, 'format', 'json')
)
SELECT DISTINCT k FROM decoded, jsonb_object_keys(doc) k
 WHERE k NOT IN (SELECT attname FROM pg_attribute WHERE attrelid = 'types_staging'::regclass AND attnum > 0)
   AND k <> 'id';

-- a few renderings spelled out, as Cosmos DB will see them (compact JSON)
SELECT substring(data from '"c_numeric":[^,]*') AS numeric_nan,
       substring(data from '"c_float8":[^,]*') AS float_inf,
       substring(data from '"c_timestamptz":[^,]*') AS timestamptz,
       substring(data from '"c_bytea":[^,]*') AS bytea
  FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL, 'format', 'json')
 WHERE data::jsonb->>'id' = '2';

-- the binary records carry the same documents
SELECT count(*) AS same_documents
  FROM pg_logical_slot_peek_binary_changes('regress_types', NULL, NULL, 'format', 'binary') b,
       cosmos_sink.decode_record(b.data) r
  JOIN types_staging t ON t.id::text = r->>'id'
 WHERE r->'document' = to_jsonb(t) || jsonb_build_object('id', t.id::text);

-- a type altered while routed: the next documents have the new shape
ALTER TYPE mood ADD VALUE 'ecstatic';
ALTER TABLE types_staging ADD COLUMN c_added int DEFAULT 5;
INSERT INTO types_staging (id, pk, c_enum) VALUES (5, 'p5', 'ecstatic');
WITH decoded AS (
  SELECT (data::jsonb->>'id')::bigint AS id, data::jsonb->'document' AS doc
    FROM pg_logical_slot_get_changes('regress_types', NULL, NULL, 'format', 'json')
)
SELECT d.id, d.doc = to_jsonb(t) || jsonb_build_object('id', t.id::text) AS doc_equal,
       d.doc->'c_added' AS c_added
  FROM decoded d JOIN types_staging t USING (id) WHERE d.id = 5;

-- text escaping byte for byte as escape_json() (to_json) writes it: every
-- character that needs escaping, and a few that do not, at every position of
-- strings of 0..20 bytes (text, varchar and char take the in-place path)
CREATE TABLE escape_probe (id int PRIMARY KEY, pk text NOT NULL, t text, v varchar(40), c char(30));
SELECT count(*) FROM cosmos_sink.add_route('escape_probe', 'shop', 'escapes', 'pk');
INSERT INTO escape_probe
SELECT row_number() OVER (), 'p', s, s, s
  FROM (SELECT repeat('a', pos) || ch || repeat('b', len - pos - 1) AS s
          FROM generate_series(1, 20) len, generate_series(0, 19) pos,
               unnest(ARRAY['"', E'\\', E'\n', E'\t', E'\r', E'\b', E'\f', E'\x01', E'\x1f', ' ', '!', '#',
                            '[', ']', '~', E'\x7f', 'é', '😀', '/', '''']) ch
         WHERE pos < len
        UNION ALL SELECT '' UNION ALL SELECT repeat(E'"\\\n', 9)) x;
WITH decoded AS (
  SELECT (data::jsonb->>'id')::int AS id, data AS raw, data::jsonb->'document' AS doc
    FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL, 'format', 'json')
   WHERE data::jsonb->>'container' = 'escapes'
)
SELECT count(*) AS rows,
       count(*) FILTER (WHERE d.doc = to_jsonb(e) || jsonb_build_object('id', e.id::text)) AS same_jsonb,
       count(*) FILTER (WHERE strpos(d.raw, '"t":' || to_json(e.t)::text || ',') > 0
                          AND strpos(d.raw, '"v":' || to_json(e.v)::text || ',') > 0
                          AND strpos(d.raw, '"c":' || to_json(e.c)::text || ',') > 0) AS same_bytes
  FROM escape_probe e JOIN decoded d USING (id);
SELECT count(*) FROM cosmos_sink.remove_route('escape_probe');
DROP TABLE escape_probe;

SELECT pg_drop_replication_slot('regress_types');
SELECT count(*) FROM cosmos_sink.remove_route('types_staging');
DROP TABLE types_staging;
DROP TYPE address, mood;
DROP DOMAIN positive_int, short_text;
