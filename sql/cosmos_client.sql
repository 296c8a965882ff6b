-- Cosmos DB client: request signing, credentials, effective partition keys,
-- outcome classification and id checks, against the published vectors
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;

-- test entry points of the library, not part of the extension
CREATE SCHEMA cosmos_test;
CREATE FUNCTION cosmos_test.sign(verb text, resource_type text, resource_link text,
                                 date text, key_text text) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_sign' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.sign_aad(verb text, resource_type text, resource_link text,
                                     date text, token text) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_sign_aad' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.format_date(unix_seconds bigint) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_format_date' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.parse_key(key_text text) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_parse_key' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.minor_release_problem(version_num integer) RETURNS text
    AS 'cosmos_sink', 'cosmos_test_minor_release_problem' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.load_credentials(key_file text, aad_file text) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_load_credentials' LANGUAGE C;
CREATE FUNCTION cosmos_test.epk(pk_json text, kind text, version int) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_epk' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.murmur(data text) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_murmur' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.classify(status int, substatus int, op text, is_request bool)
  RETURNS text AS '$libdir/cosmos_sink', 'cosmos_test_classify' LANGUAGE C STRICT;
CREATE FUNCTION cosmos_test.id_reason(id text) RETURNS text
  AS '$libdir/cosmos_sink', 'cosmos_test_id_reason' LANGUAGE C STRICT;
-- the header value with its escapes undone
CREATE FUNCTION cosmos_test.url_decode(h text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT replace(replace(replace(replace(replace(replace(replace(replace(h,
    '%3D', '='), '%3d', '='), '%26', '&'), '%2B', '+'), '%2b', '+'), '%2F', '/'), '%2f', '/'),
    '%25', '%') $$;

--
-- Master-key signature: the official vector (Microsoft REST docs, "Example Encoding")
--
\set doc_key 'dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw=='
SELECT cosmos_test.sign('GET', 'dbs', 'dbs/ToDoList', 'Thu, 27 Apr 2017 00:51:12 GMT', :'doc_key')
  AS header \gset
SELECT :'header' AS header,
       :'header' = 'type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D'
         AS uppercase_escapes,
       cosmos_test.url_decode(:'header') = cosmos_test.url_decode(
         'type%3dmaster%26ver%3d1.0%26sig%3dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2bc%2bc%3d')
         AS same_as_docs,
       cosmos_test.url_decode(:'header') AS decoded;
-- the three wrong implementations of the reference give other signatures
SELECT split_part(cosmos_test.url_decode(:'header'), 'sig=', 2) AS sig,
       split_part(cosmos_test.url_decode(:'header'), 'sig=', 2)
         NOT IN ('a7YZaHdlmUUR2n9H6JtkhFiuJZi1xVrLf35iK3FNhxA=',  -- verb not lowercased
                 '2VcgFqfJCqanOOk6Bt9IMeGnOC/sHzYjtO1mMqWVucU=',  -- date not lowercased
                 'l5TzY/mUzYGoohgCL4huognzuf0eGlU5/Q6klq03F1w=')  -- one trailing newline
         AS not_a_negative_control;
-- verb, resource type and date are lowercased for signing; the link keeps its case
SELECT cosmos_test.sign('get', 'DBS', 'dbs/ToDoList', 'thu, 27 apr 2017 00:51:12 gmt', :'doc_key')
         = :'header' AS case_folded,
       cosmos_test.sign('GET', 'dbs', 'dbs/todolist', 'Thu, 27 Apr 2017 00:51:12 GMT', :'doc_key')
         <> :'header' AS link_case_kept;
-- the same key inside a connection string, or with blanks around it, signs the same
SELECT cosmos_test.sign('GET', 'dbs', 'dbs/ToDoList', 'Thu, 27 Apr 2017 00:51:12 GMT',
         E'\n  ' || :'doc_key' || E'  \n') = :'header' AS bare_key_trimmed,
       cosmos_test.sign('GET', 'dbs', 'dbs/ToDoList', 'Thu, 27 Apr 2017 00:51:12 GMT',
         'AccountEndpoint=https://myaccount.documents.azure.com:443/;AccountKey=' || :'doc_key' || ';')
         = :'header' AS connection_string;
-- feed operations sign the parent link, point operations the resource (raw id)
SELECT cosmos_test.sign('POST', 'docs', 'dbs/shop/colls/orders', 'Thu, 27 Apr 2017 00:51:12 GMT',
                        :'doc_key') AS post_docs,
       cosmos_test.sign('DELETE', 'docs', 'dbs/shop/colls/orders/docs/a b', 'Thu, 27 Apr 2017 00:51:12 GMT',
                        :'doc_key') AS delete_doc;
-- no key, no signature
SELECT cosmos_test.sign('GET', 'dbs', 'dbs/ToDoList', 'Thu, 27 Apr 2017 00:51:12 GMT', 'not a key');

--
-- Entra ID (AAD) token: type=aad, the token as the signature, URL-encoded
--
SELECT cosmos_test.sign_aad('POST', 'docs', 'dbs/shop/colls/orders', 'Thu, 27 Apr 2017 00:51:12 GMT',
         E'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl_-x\n') AS aad_header;
SELECT cosmos_test.url_decode(cosmos_test.sign_aad('GET', 'dbs', 'dbs/shop', 'x',
         'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl'))
         = 'type=aad&ver=1.0&sig=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl' AS aad_decoded;
SELECT cosmos_test.sign_aad('GET', 'dbs', 'dbs/shop', 'x', 'Bearer abc.def.ghi');
SELECT cosmos_test.sign_aad('GET', 'dbs', 'dbs/shop', 'x', 'abc.def');
SELECT cosmos_test.sign_aad('GET', 'dbs', 'dbs/shop', 'x', E' \n ');

--
-- x-ms-date: RFC 1123 in English, whatever the locale
--
SELECT cosmos_test.format_date(extract(epoch FROM timestamptz '2017-04-27 00:51:12+00')::bigint)
         AS doc_date,
       cosmos_test.format_date(0) AS epoch,
       cosmos_test.format_date(extract(epoch FROM timestamptz '2024-02-29 23:59:59+00')::bigint)
         AS leap_day;
-- every day of the week and month of the year, against to_char (English for Dy/Mon)
SELECT count(*) AS dates,
       count(*) FILTER (WHERE cosmos_test.format_date(extract(epoch FROM t)::bigint)
                        <> to_char(t AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"'))
         AS mismatches
  FROM generate_series(timestamptz '1999-12-25 13:14:15+00', '2001-01-10', '37 hours') t;

--
-- Key text: bare base64 key or connection string; messages never show the key
--
SELECT k AS case, cosmos_test.parse_key(v) AS parsed
  FROM (VALUES
    ('bare key', :'doc_key'),
    ('bare key, blanks and newlines', E'\n\t ' || :'doc_key' || E' \r\n'),
    ('connection string', 'AccountEndpoint=https://myaccount.documents.azure.com:443/;AccountKey=' || :'doc_key' || ';'),
    ('any order, no last ;', E'AccountKey = ' || :'doc_key' || E' ;\n  AccountEndpoint = https://localhost:8081/ \n'),
    ('names in any case, other names ignored', 'accountendpoint=https://a.documents.azure.com/;ACCOUNTKEY=' || :'doc_key' || ';Database=shop;'),
    ('connection string without endpoint', 'AccountKey=' || :'doc_key'),
    ('emulator key', 'AccountEndpoint=https://localhost:8081/;AccountKey=C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==')
  ) AS t(k, v);
-- malformed input: false with a message naming the problem
SELECT k AS case, cosmos_test.parse_key(v) AS parsed
  FROM (VALUES
    ('empty', ''),
    ('blanks only', E'  \n\t '),
    ('not base64', 'not a key!'),
    ('bad padding', 'c2VjcmV0'||'='||'x'),
    ('length not a multiple of 4', 'c2VjcmV0c'),
    ('too long', repeat('QUJD', 60)),
    ('no AccountKey', 'AccountEndpoint=https://myaccount.documents.azure.com:443/;'),
    ('empty AccountKey', 'AccountEndpoint=https://myaccount.documents.azure.com:443/;AccountKey=;'),
    ('AccountKey not base64', 'AccountEndpoint=https://x/;AccountKey=s3cr3t$value;'),
    ('AccountKey twice', 'AccountKey=' || :'doc_key' || ';AccountKey=' || :'doc_key'),
    ('endpoint not http(s)', 'AccountEndpoint=ftp://x/;AccountKey=' || :'doc_key'),
    ('garbage', 'garbage;s3cr3t garbage'),
    ('only separators', ';;;')
  ) AS t(k, v);
-- no message quotes what it was given
SELECT bool_and(strpos(cosmos_test.parse_key(v), 's3cr3t') = 0
                AND strpos(cosmos_test.parse_key(v), 'c2VjcmV0') = 0) AS no_secret_in_messages
  FROM (VALUES ('s3cr3t$'), ('AccountKey=s3cr3t$;'), ('garbage;s3cr3t'), ('c2VjcmV0c'),
               ('AccountEndpoint=s3cr3t;AccountKey=c2VjcmV0')) AS t(v);

--
-- Loading credentials from files (the file-mode refusal of a private file is
-- tested by the shell suite, which can create one)
--
SELECT cosmos_test.load_credentials('/nonexistent/cosmos-key', NULL) AS missing_key_file;
SELECT cosmos_test.load_credentials(NULL, '/nonexistent/cosmos-token') AS missing_token_file;
SELECT cosmos_test.load_credentials('/nonexistent/cosmos-key', '/nonexistent/cosmos-token') AS both_set;
SELECT cosmos_test.load_credentials(NULL, NULL) AS none_set,
       cosmos_test.load_credentials('', '') AS empty_settings;
SELECT cosmos_test.load_credentials('/', NULL) AS directory;
-- a key or token file another OS user owns, or others can read, is refused,
-- naming the fix (never the contents); uids and paths differ per machine
CREATE FUNCTION pg_temp.masked(t text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(t, '(uid |is |chown )[0-9]+', '\1N', 'g'),
                                         '"/[^"]*"', '"FILE"', 'g'),
                          '(chmod 600 |chown N )/[^ ]+', '\1FILE', 'g')
$$;
SELECT pg_temp.masked(cosmos_test.load_credentials('/etc/passwd', NULL)) AS foreign_key_file;
SELECT pg_temp.masked(cosmos_test.load_credentials(NULL, '/etc/passwd')) AS foreign_token_file;
\getenv abs_builddir PG_ABS_BUILDDIR
\set readable_file :abs_builddir '/results/readable_token.txt'
COPY (SELECT 'not a token') TO :'readable_file';
SELECT pg_temp.masked(cosmos_test.load_credentials(NULL, :'readable_file')) AS readable_token_file;
SELECT pg_temp.masked(cosmos_test.load_credentials(:'readable_file', NULL)) AS readable_key_file;

--
-- MurmurHash3 self-checks (Appleby reference values)
--
SELECT d AS data, cosmos_test.murmur(d) AS hashes
  FROM (VALUES ('hello'), (''), ('The quick brown fox jumps over the lazy dog')) AS t(d);
SELECT cosmos_test.murmur('hello') = 'x64_128 h1 cbd8a7b341bd9b02 h2 5b1e906a48ae1d19, x86_32 248bfa47'
         AS hello_ok,
       cosmos_test.murmur('') = 'x64_128 h1 0000000000000000 h2 0000000000000000, x86_32 00000000'
         AS empty_ok;

--
-- Effective partition keys: every vector of the protocol reference, section 6.5
--
CREATE TABLE cosmos_test.epk_vectors (n serial, label text, pk text, kind text, version int,
                                      expected text);
INSERT INTO cosmos_test.epk_vectors (label, pk, kind, version, expected) VALUES
  -- Hash v2
  ('v2 ["redmond"]', '["redmond"]', 'Hash', 2, '22E342F38A486A088463DFF7838A5963'),
  ('v2 [""]', '[""]', 'Hash', 2, '32E9366E637A71B4E710384B2F4970A0'),
  ('v2 ["aa"]', '["aa"]', 'Hash', 2, '05033626483AE80D00E44FBD35362B19'),
  ('v2 ["partitionKey"]', '["partitionKey"]', 'Hash', 2, '013AEFCF77FA271571CF665A58C933F1'),
  ('v2 ["customer42"]', '["customer42"]', 'Hash', 2, '19819C94CE42A1654CCC8110539D9589'),
  ('v2 110 x "a"', '["' || repeat('a', 110) || '"]', 'Hash', 2, '0BA3E9CA8EE4C14538828D1612A4B652'),
  ('v2 145 x "a"', '["' || repeat('a', 145) || '"]', 'Hash', 2, '36375D21568760E891C9CB7002D5E059'),
  ('v2 1024 x "a"', '["' || repeat('a', 1024) || '"]', 'Hash', 2, '332BDF5512AE49615F32C7D98C2DB86C'),
  ('v2 [null]', '[null]', 'Hash', 2, '378867E4430E67857ACE5C908374FE16'),
  ('v2 [{}] (undefined)', '[{}]', 'Hash', 2, '11622DAA78F835834610ABE56EFF5CB5'),
  ('v2 [true]', '[true]', 'Hash', 2, '0E711127C5B5A8E4726AC6DD306A3E59'),
  ('v2 [false]', '[false]', 'Hash', 2, '2FE1BE91E90A3439635E0E9E37361EF2'),
  ('v2 [5]', '[5]', 'Hash', 2, '19C08621B135968252FB34B4CF66F811'),
  ('v2 [5.0]', '[5.0]', 'Hash', 2, '19C08621B135968252FB34B4CF66F811'),
  ('v2 [5.5]', '[5.5]', 'Hash', 2, '0E2EE47829D1AF775EEFB6540FD1D0ED'),
  ('v2 [5.12312419050912359123]', '[5.12312419050912359123]', 'Hash', 2, '0EF2E2D82460884AF0F6440BE4F726A8'),
  ('v2 [12313.1221]', '[12313.1221]', 'Hash', 2, '27E7ECA8F2EE3E53424DE8D5220631C6'),
  ('v2 [123456789]', '[123456789]', 'Hash', 2, '1F56D2538088EBA82CCF988F36E16760'),
  ('v2 [-128]', '[-128]', 'Hash', 2, '01DAEDABF913540367FE219B2AD06148'),
  ('v2 [2147483647]', '[2147483647]', 'Hash', 2, '2D9349D64712AEB5EB1406E2F0BE2725'),
  ('v2 [1.7976931348623157e308]', '[1.7976931348623157e308]', 'Hash', 2, '31424D996457102634591FF245DBCC4D'),
  ('v2 [5.0,"redmond",true,null]', '[5.0,"redmond",true,null]', 'Hash', 2, '3032DECBE2AB1768D8E0AEDEA35881DF'),
  -- MultiHash
  ('multi ["seattle"]', '["seattle"]', 'MultiHash', 2, '07E4D14180A45153F00B44907886F856'),
  ('multi ["seattle","redmond"]', '["seattle","redmond"]', 'MultiHash', 2,
   '07E4D14180A45153F00B44907886F85622E342F38A486A088463DFF7838A5963'),
  ('multi ["seattle","redmond",5.123...]', '["seattle","redmond",5.12312419050912359123]', 'MultiHash', 2,
   '07E4D14180A45153F00B44907886F85622E342F38A486A088463DFF7838A59630EF2E2D82460884AF0F6440BE4F726A8'),
  ('multi ["title_player_account!...","Title-B60C1"]', '["title_player_account!9E711EFBD3BBB492","Title-B60C1"]',
   'MultiHash', 2, '2306FDF78C35ED4FD1C5835B075FC0B0248E1F58635558D12708326234F93A21'),
  ('multi [false,null]', '[false,null]', 'MultiHash', 2,
   '2FE1BE91E90A3439635E0E9E37361EF2378867E4430E67857ACE5C908374FE16'),
  -- Hash v1
  ('v1 ["redmond"]', '["redmond"]', 'Hash', 1, '05C1EFE313830C087366656E706F6500'),
  ('v1 ["partitionKey"]', '["partitionKey"]', 'Hash', 1, '05C1E1B3D9CD2608716273756A756A706F4C667A00'),
  ('v1 [""]', '[""]', 'Hash', 1, '05C1CF33970FF80800'),
  ('v1 [null]', '[null]', 'Hash', 1, '05C1ED45D7475601'),
  ('v1 [{}]', '[{}]', 'Hash', 1, '05C1D529E345DC00'),
  ('v1 [true]', '[true]', 'Hash', 1, '05C1D7C5A903D803'),
  ('v1 [false]', '[false]', 'Hash', 1, '05C1DB857D857C02'),
  ('v1 [5]', '[5]', 'Hash', 1, '05C1D9C1C5517C05C014'),
  ('v1 [2147483647]', '[2147483647]', 'Hash', 1, '05C1E1F503DFB205C1DFFFFFFFFC'),
  ('v1 [2,true,false,null,undefined,"Привет!"]', '[2,true,false,null,{},"Привет!"]', 'Hash', 1,
   '05C1D19581B37C05C0000302010008D1A0D281D1B9D1B3D1B6D2832200'),
  -- extra values computed with the verified implementation
  ('v2 ["pk1"]', '["pk1"]', 'Hash', 2, '1EC0C2CBE45DBC919CF2B65D399C2673'),
  ('v2 [0]', '[0]', 'Hash', 2, '155B95BEDAC4B1E9EC1CDC9BB0DDDE58'),
  ('v2 [1]', '[1]', 'Hash', 2, '20CD98B339BA78A5D0CF6953B87070B0'),
  ('multi ["tenant1","user1"]', '["tenant1","user1"]', 'MultiHash', 2,
   '0DAE0B8467B011E957BC0B8B0DEB5ACA236A5BE3329A7AD57D4B998E8602BD7B');
SELECT label, cosmos_test.epk(pk, kind, version) AS epk,
       cosmos_test.epk(pk, kind, version) = expected AS ok
  FROM cosmos_test.epk_vectors ORDER BY n;
SELECT count(*) AS vectors,
       count(*) FILTER (WHERE cosmos_test.epk(pk, kind, version) <> expected) AS wrong
  FROM cosmos_test.epk_vectors;

-- properties: an empty key is the minimum, MultiHash levels are prefixes,
-- escapes and blanks do not matter, v1 cuts strings to 100 characters
SELECT cosmos_test.epk('[]', 'Hash', 2) = '' AS empty_v2,
       cosmos_test.epk('[]', 'MultiHash', 2) = '' AS empty_multi,
       cosmos_test.epk('[]', 'Hash', 1) = '' AS empty_v1,
       cosmos_test.epk('["seattle","redmond"]', 'MultiHash', 2)
         LIKE cosmos_test.epk('["seattle"]', 'MultiHash', 2) || '%' AS multihash_prefix,
       cosmos_test.epk(' [ "red\u006dond" ] ', 'Hash', 2) = cosmos_test.epk('["redmond"]', 'Hash', 2)
         AS escapes_and_blanks,
       cosmos_test.epk('["\u041f\u0440\u0438\u0432\u0435\u0442!"]', 'Hash', 1)
         = cosmos_test.epk('["Привет!"]', 'Hash', 1) AS unicode_escapes,
       cosmos_test.epk('[5e0]', 'Hash', 2) = cosmos_test.epk('[5]', 'Hash', 2) AS number_as_double,
       cosmos_test.epk('["' || repeat('a', 1024) || '"]', 'Hash', 1)
         = cosmos_test.epk('["' || repeat('a', 100) || '"]', 'Hash', 1) AS v1_cut_at_100,
       cosmos_test.epk('["' || repeat('a', 101) || '"]', 'Hash', 2)
         <> cosmos_test.epk('["' || repeat('a', 100) || '"]', 'Hash', 2) AS v2_not_cut;
-- v1 strings over 100 UTF-8 bytes: 101 bytes, each plus one, no terminator
SELECT right(cosmos_test.epk('["' || repeat('é', 60) || '"]', 'Hash', 1), 204)
         = '08' || repeat('C4AA', 50) || 'C4' AS v1_long_string_encoding;
-- v1 cuts at 100 UTF-16 units: characters, not bytes; half a surrogate pair becomes U+FFFD
SELECT cosmos_test.epk('["' || repeat('é', 150) || '"]', 'Hash', 1)
         = cosmos_test.epk('["' || repeat('é', 100) || '"]', 'Hash', 1) AS v1_cut_in_characters,
       cosmos_test.epk('["' || repeat('a', 99) || '😀"]', 'Hash', 1)
         = cosmos_test.epk('["' || repeat('a', 99) || '\ufffd"]', 'Hash', 1) AS v1_cut_surrogate,
       cosmos_test.epk('["' || repeat('a', 98) || '😀"]', 'Hash', 1)
         <> cosmos_test.epk('["' || repeat('a', 98) || '\ufffd"]', 'Hash', 1) AS v1_whole_pair_kept;
-- what is not a partition key value
SELECT cosmos_test.epk('not json', 'Hash', 2);
SELECT cosmos_test.epk('["a"', 'Hash', 2);
SELECT cosmos_test.epk('"redmond"', 'Hash', 2);
SELECT cosmos_test.epk('{"a":1}', 'Hash', 2);
SELECT cosmos_test.epk('[[1]]', 'Hash', 2);
SELECT cosmos_test.epk('[{"a":1}]', 'Hash', 2);
SELECT cosmos_test.epk('[1e999]', 'Hash', 2);
SELECT cosmos_test.epk('[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]', 'Hash', 2);
SELECT cosmos_test.epk('["a"]', 'Hash', 3);
SELECT cosmos_test.epk('["a"]', 'Range', 2);

--
-- Outcome of every status (SPEC section 5, protocol reference section 7)
--
CREATE TABLE cosmos_test.status_cases (n serial, status int, substatus int, op text,
                                       is_request bool, expected text);
INSERT INTO cosmos_test.status_cases (status, substatus, op, is_request, expected) VALUES
  -- no answer: connection reset, timeout
  (0, 0, 'upsert', false, 'transient'),
  (0, 0, 'delete', true, 'transient'),
  -- 2xx
  (200, 0, 'upsert', false, 'success'),
  (201, 0, 'upsert', false, 'success'),
  (204, 0, 'delete', false, 'success'),
  (207, 0, 'upsert', true, 'success'),
  -- 404
  (404, 0, 'delete', false, 'success_absent'),
  (404, 0, 'delete', true, 'config_error'),
  (404, 0, 'upsert', true, 'config_error'),
  (404, 1003, 'delete', false, 'config_error'),
  (404, 1003, 'upsert', false, 'config_error'),
  (404, 0, 'upsert', false, 'config_error'),
  -- 429
  (429, 3200, 'upsert', false, 'throttled'),
  (429, 3201, 'delete', true, 'throttled'),
  (429, 3088, 'upsert', false, 'throttled'),
  (429, 0, 'upsert', true, 'throttled'),
  -- transient
  (408, 0, 'upsert', false, 'transient'),
  (449, 0, 'upsert', false, 'transient'),
  (500, 0, 'upsert', true, 'transient'),
  (502, 0, 'delete', true, 'transient'),
  (503, 0, 'upsert', false, 'transient'),
  (504, 0, 'upsert', true, 'transient'),
  -- 410
  (410, 1002, 'upsert', false, 'reroute'),
  (410, 1007, 'delete', false, 'reroute'),
  (410, 1008, 'upsert', true, 'reroute'),
  (410, 1000, 'upsert', false, 'refresh_container'),
  (410, 0, 'upsert', false, 'transient'),
  (410, 1001, 'delete', true, 'transient'),
  -- 424
  (424, 0, 'upsert', false, 'dependent'),
  (424, 0, 'delete', false, 'dependent'),
  -- authorization
  (401, 0, 'upsert', true, 'config_error'),
  (401, 0, 'delete', false, 'config_error'),
  (403, 3, 'upsert', true, 'config_error'),
  (403, 5300, 'upsert', false, 'config_error'),
  (403, 1008, 'delete', true, 'config_error'),
  -- 413
  (413, 3402, 'upsert', false, 'transient'),
  (413, 3402, 'delete', false, 'transient'),
  (413, 0, 'upsert', false, 'poison'),
  (413, 0, 'upsert', true, 'poison'),
  -- poison
  (400, 0, 'upsert', false, 'poison'),
  (400, 1001, 'delete', false, 'poison'),
  (400, 0, 'upsert', true, 'poison'),
  (409, 0, 'upsert', false, 'poison'),
  (409, 0, 'delete', false, 'poison'),
  (412, 0, 'upsert', false, 'poison'),
  (418, 0, 'delete', false, 'poison'),
  -- unknown 5xx
  (501, 0, 'upsert', false, 'transient'),
  (505, 0, 'delete', true, 'transient'),
  (599, 0, 'upsert', false, 'transient'),
  -- not an answer Cosmos DB gives: the endpoint is wrong
  (100, 0, 'upsert', true, 'config_error'),
  (301, 0, 'upsert', true, 'config_error'),
  (600, 0, 'delete', false, 'config_error'),
  (-1, 0, 'upsert', false, 'config_error');
SELECT status, substatus, op, is_request,
       cosmos_test.classify(status, substatus, op, is_request) AS outcome,
       cosmos_test.classify(status, substatus, op, is_request) = expected AS ok
  FROM cosmos_test.status_cases ORDER BY n;
SELECT count(*) AS cases,
       count(*) FILTER (WHERE cosmos_test.classify(status, substatus, op, is_request) <> expected)
         AS wrong
  FROM cosmos_test.status_cases;
SELECT cosmos_test.classify(200, 0, 'replace', false);

--
-- Ids Cosmos DB refuses
--
SELECT k AS case, cosmos_test.id_reason(v) AS reason
  FROM (VALUES
    ('plain', 'order-42_a.b~c'),
    ('empty', ''),
    ('1023 bytes', repeat('a', 1023)),
    ('1024 bytes', repeat('a', 1024)),
    ('1022 bytes in 511 characters', repeat('é', 511)),
    ('1024 bytes in 512 characters', repeat('é', 512)),
    ('slash', 'a/b'),
    ('backslash', E'a\\b'),
    ('question mark', 'a?b'),
    ('hash', 'a#b'),
    ('percent and space (allowed)', 'a% b')
  ) AS t(k, v);

SET client_min_messages = warning;
-- minor releases without PostgreSQL's fix for invalidations of committed
-- transactions are refused, naming the release to upgrade to
SELECT v, cosmos_test.minor_release_problem(v) AS problem
  FROM unnest(ARRAY[150012, 150013, 160008, 160009, 170004, 170005, 180000]) AS v;

DROP SCHEMA cosmos_test CASCADE;
RESET client_min_messages;
