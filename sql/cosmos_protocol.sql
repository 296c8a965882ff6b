SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cosmos_sink;
RESET client_min_messages;

-- Wrappers of the C protocol functions (src/cosmos_protocol.c), for this test only
CREATE SCHEMA cosmos_test_protocol;
SET search_path = cosmos_test_protocol, public;
CREATE FUNCTION batch_body(jsonb) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_batch_body' LANGUAGE C STRICT;
CREATE FUNCTION batch_bodies(jsonb, int) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_batch_bodies' LANGUAGE C STRICT;
CREATE FUNCTION pk_header(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_pk_header' LANGUAGE C STRICT;
-- same C function over raw bytes, to feed it invalid UTF-8
CREATE FUNCTION pk_header_bytes(bytea) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_pk_header' LANGUAGE C STRICT;
CREATE FUNCTION url_encode(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_url_encode' LANGUAGE C STRICT;
CREATE FUNCTION parse_batch(text, int) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_parse_batch' LANGUAGE C STRICT;
CREATE FUNCTION parse_batch_bytes(bytea, int) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_parse_batch' LANGUAGE C STRICT;
CREATE FUNCTION parse_container(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_parse_container' LANGUAGE C STRICT;
CREATE FUNCTION parse_pkranges(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_parse_pkranges' LANGUAGE C STRICT;
CREATE FUNCTION find_range(text, text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_find_range' LANGUAGE C STRICT;
CREATE FUNCTION error_message(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_error_message' LANGUAGE C STRICT;
CREATE FUNCTION parse_resource_ids(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_parse_resource_ids' LANGUAGE C STRICT;
CREATE FUNCTION parse_offers(text, text, text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_parse_offers' LANGUAGE C STRICT;
CREATE FUNCTION offer_query(text, text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_offer_query' LANGUAGE C STRICT;
CREATE FUNCTION error_message_bytes(bytea) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_error_message' LANGUAGE C STRICT;

--
-- Batch and bulk bodies.
--
SELECT batch_body('[]');
SELECT batch_body('[{"op":"upsert","id":"1","pk":"[\"a\"]","doc":{"id":"1","pk":"a","v":1}}]');
SELECT batch_body('[{"op":"delete","id":"2","pk":"[\"a\"]"}]');
SELECT batch_body('[{"op":"upsert","id":"1","pk":"[\"a\"]","doc":{"id":"1","pk":"a"}},
                    {"op":"delete","id":"2","pk":"[\"a\"]"},
                    {"op":"upsert","id":"3","pk":"[\"b\",5]","doc":{"id":"3","pk":"b","n":5}}]');
-- the document goes in verbatim, whitespace and all
SELECT batch_body('[{"op":"upsert","id":"v","pk":"[\"p\"]","doc":"{ \"id\" : \"v\",\n  \"pk\":\"p\" }"}]');
-- quotes, backslashes, control characters and non-ASCII in ids and keys
SELECT batch_body('[{"op":"delete","id":"q\"u\\o/te\t\u0001é😀","pk":"[\"x\\\"y\",\"ü\"]"}]');
SELECT batch_body('[{"op":"upsert","id":"a\"b","pk":"[\"x\\\"y\\\\z\",null,{}]","doc":{"id":"a\"b","pk":"x\"y\\z","t":"日本"}}]');
-- every body is valid JSON that gives back the ids, keys and documents
WITH t(ops) AS (VALUES ('[{"op":"upsert","id":"a\"b\\c","pk":"[\"k\\\"1\",\"é😀\"]","doc":{"id":"a\"b\\c","x":[1,{"y":"é"}]}},
                         {"op":"delete","id":"q\"u\\o\u0001té😀","pk":"[\"x\\\"y\",5.50,true]"}]'::jsonb)),
     b(ops, body) AS (SELECT ops, batch_body(ops)::jsonb FROM t)
SELECT jsonb_array_length(body) AS n,
       body->0->>'operationType' AS op0, body->1->>'operationType' AS op1,
       body->0->'resourceBody' = ops->0->'doc' AS doc_ok,
       body->1->>'id' = ops->1->>'id' AS id_ok,
       body->0->>'partitionKey' = ops->0->>'pk' AS pk0_ok,
       body->1->>'partitionKey' = ops->1->>'pk' AS pk1_ok,
       (body->1->>'partitionKey')::jsonb = '["x\"y",5.50,true]'::jsonb AS pk1_json_ok
FROM b;
-- a body of 100 ops of every kind and many escapes
SELECT jsonb_array_length(body) AS ops,
       (SELECT count(*) FROM jsonb_array_elements(body) e WHERE e->>'operationType' = 'Delete') AS deletes,
       body->98->>'id' AS id99, body->99->'resourceBody'->>'id' AS id100
FROM (SELECT batch_body(jsonb_agg(jsonb_build_object(
               'op', CASE WHEN i % 3 = 0 THEN 'delete' ELSE 'upsert' END,
               'id', 'id-' || i || repeat('"é\', i % 4),
               'pk', jsonb_build_array('p' || i % 7, i)::text,
               'doc', jsonb_build_object('id', 'id-' || i, 'v', repeat('x', i))) ORDER BY i))::jsonb AS body
      FROM generate_series(1, 100) i) s;
-- split by size (cosmos_sink.batch_max_bytes): every body within the limit with
-- its closing bracket, none could take the next op, every op exactly once in
-- order; an op over the limit alone still makes its own body
WITH ops(o) AS (SELECT jsonb_agg(jsonb_build_object(
               'op', CASE WHEN i % 4 = 0 THEN 'delete' ELSE 'upsert' END,
               'id', 'd' || i || repeat('"', i % 3), 'pk', jsonb_build_array('p' || i % 5)::text,
               'doc', jsonb_build_object('id', 'd' || i || repeat('"', i % 3), 'v', repeat('é', (i * 37) % 300))) ORDER BY i)
           FROM generate_series(1, 60) i),
     limits(max_bytes) AS (VALUES (300), (1000), (4096), (1000000)),
     split AS (SELECT max_bytes, n, body FROM limits, ops, string_to_table(batch_bodies(o, max_bytes), E'\n') WITH ORDINALITY u(body, n))
SELECT max_bytes, count(*) AS bodies,
       sum(jsonb_array_length(body::jsonb)) AS ops,
       bool_and(octet_length(body) <= max_bytes OR jsonb_array_length(body::jsonb) = 1) AS within_limit,
       count(*) FILTER (WHERE octet_length(body) > max_bytes) AS single_over_limit,
       (SELECT string_agg(coalesce(e->>'id', e->'resourceBody'->>'id'), ',' ORDER BY s2.n, e.ord) FROM split s2,
          jsonb_array_elements(s2.body::jsonb) WITH ORDINALITY e(e, ord)
        WHERE s2.max_bytes = s.max_bytes) = (SELECT string_agg(x->>'id', ',' ORDER BY k) FROM ops,
          jsonb_array_elements(o) WITH ORDINALITY y(x, k)) AS all_in_order
FROM split s GROUP BY max_bytes ORDER BY max_bytes;
-- no body could have taken the first op of the next one
WITH ops(o) AS (SELECT jsonb_agg(jsonb_build_object('op', 'upsert', 'id', 'd' || i,
               'pk', '["p"]', 'doc', jsonb_build_object('id', 'd' || i, 'v', repeat('x', i * 11))) ORDER BY i)
           FROM generate_series(1, 40) i),
     b AS (SELECT n, body, jsonb_array_length(body::jsonb) AS nops FROM ops, string_to_table(batch_bodies(o, 2000), E'\n') WITH ORDINALITY u(body, n)),
     c AS (SELECT n, body, sum(nops) OVER (ORDER BY n) - nops AS first_op FROM b)
SELECT count(*) AS pairs,
       bool_and(octet_length(c1.body) + octet_length(batch_body(jsonb_build_array(o->(c2.first_op::int)))) - 1 > 2000)
         AS next_op_would_not_fit
FROM ops, c c1 JOIN c c2 ON c2.n = c1.n + 1;
SELECT batch_bodies('[]', 1000) = '' AS no_ops_no_bodies;

--
-- x-ms-documentdb-partitionkey: compact JSON, every non-ASCII character as \uXXXX
--
SELECT pk_header('["a"]');
SELECT pk_header(' [ "a" , 5.50 , -1e3 , true , false , null , {} ] ');
SELECT pk_header('[]');
SELECT pk_header('[{}]');
SELECT pk_header('["tenant","user","session"]');
SELECT pk_header('["é","日本","😀","x😀y"]');
-- escapes in the input are decoded and re-escaped the same way
SELECT pk_header('["\u00e9\ud83d\ude00", "q\"b\\s\/t\n\u0001\u0041"]');
SELECT pk_header('[{"ké": ["ü", 1]}]');
-- DEL is not allowed in a header value either
SELECT pk_header('["a' || chr(127) || '", "\u007f"]');
-- errors: not JSON, not an array, broken escapes, invalid UTF-8
SELECT pk_header('["a"');
SELECT pk_header('not json');
SELECT pk_header('');
SELECT pk_header('["a"] x');
SELECT pk_header('{"a":1}');
SELECT pk_header('"a"');
SELECT pk_header('5');
SELECT pk_header('["\ud83d"]');
SELECT pk_header('["\ude00"]');
SELECT pk_header('["\u0000"]');
SELECT pk_header('["\x"]');
SELECT pk_header_bytes('\x5b22ff225d');  -- ["<0xff>"]
SELECT pk_header_bytes('\x5b22c3225d');  -- ["<truncated é>"]

--
-- Ids in URL paths: everything but RFC 3986 unreserved is percent-encoded
--
SELECT url_encode('a b/c?d#e%f');
SELECT url_encode('AZaz09-_.~');
SELECT url_encode('é😀');
SELECT url_encode('+&=:@!$''()*,;[]"\');
SELECT url_encode('');

--
-- Batch responses (200 and 207): one result per op
--
SELECT parse_batch('[{"statusCode":201,"requestCharge":6.29,"eTag":"\"00000000-0000\"","resourceBody":{"id":"a","statusCode":999,"nested":{"requestCharge":77,"list":[1,{"subStatusCode":5}]}}},
                    {"statusCode":204,"subStatusCode":0,"requestCharge":1.5,"retryAfterMilliseconds":0}]', 2);
-- 207: the failing op has its own status, the others 424
SELECT parse_batch('[{"statusCode":424,"requestCharge":0},{"statusCode":409,"subStatusCode":0,"requestCharge":1.24},{"statusCode":424,"requestCharge":0}]', 3);
-- throttled op with retry-after; fractional retry rounds up
SELECT parse_batch('[{"statusCode":429,"subStatusCode":3200,"requestCharge":0,"retryAfterMilliseconds":150},
                    {"statusCode":429,"subStatusCode":3200,"retryAfterMilliseconds":12.2}]', 2);
-- optional fields absent or null take their defaults; unknown fields are skipped
SELECT parse_batch('[{"statusCode":200},{"statusCode":201,"subStatusCode":null,"requestCharge":null,"retryAfterMilliseconds":null,"x":[[{}]]}]', 2);
SELECT parse_batch(' [ ] ', 0);
-- errors
SELECT parse_batch('[{"requestCharge":1},{"statusCode":200}]', 2);
SELECT parse_batch('[{"statusCode":200},{"resourceBody":{"statusCode":200}}]', 2);
SELECT parse_batch('[{"statusCode":"200"}]', 1);
SELECT parse_batch('[{"statusCode":null}]', 1);
SELECT parse_batch('[{"statusCode":200.5}]', 1);
SELECT parse_batch('[{"statusCode":200,"requestCharge":"1"}]', 1);
SELECT parse_batch('[{"statusCode":200}]', 2);
SELECT parse_batch('[{"statusCode":200},{"statusCode":200},{"statusCode":200}]', 2);
SELECT parse_batch('{"code":"BadRequest","message":"bad"}', 1);
SELECT parse_batch('[200]', 1);
SELECT parse_batch('[{"statusCode":200},[]]', 2);
SELECT parse_batch('<html><body>502 Bad Gateway</body></html>', 1);
SELECT parse_batch('', 1);
SELECT parse_batch('[{"statusCode":200}', 1);
SELECT parse_batch('[{"statusCode":200}] [', 1);
SELECT parse_batch_bytes('\x5b7b22ff223a317d5d', 1);  -- [{"<0xff>":1}]

--
-- Container resources: partitionKey paths, kind and version
--
SELECT parse_container('{"id":"orders",
  "indexingPolicy":{"indexingMode":"consistent","automatic":true,"includedPaths":[{"path":"/*"}],
                    "excludedPaths":[{"path":"/\"_etag\"/?"}],"compositeIndexes":[[{"path":"/a","order":"ascending"}]]},
  "geospatialConfig":{"type":"Geography","partitionKey":{"paths":["/wrong"],"kind":"Range"}},
  "partitionKey":{"paths":["/customerId"],"kind":"Hash","version":2},
  "uniqueKeyPolicy":{"uniqueKeys":[{"paths":["/email","/x","/y","/z"]}]},
  "conflictResolutionPolicy":{"mode":"LastWriterWins","conflictResolutionPath":"/_ts","conflictResolutionProcedure":""},
  "_rid":"x1Y=","_ts":1714000000,"_self":"dbs/x1Y=/colls/x1Y=/","_etag":"\"0000\""}');
SELECT parse_container('{"id":"sessions","partitionKey":{"paths":["/tenantId","/userId","/sessionId"],"kind":"MultiHash","version":2}}');
SELECT parse_container('{"partitionKey":{"version":2,"kind":"MultiHash","paths":["/a","/b"]},"id":"c"}');
-- version absent (old containers, the test server) means 1; kind absent means Hash
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"kind":"Hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"]}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/_partitionKey"],"kind":"Hash","systemKey":true}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/ünï"],"kind":"Hash","version":null}}');
-- errors
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"kind":"Range","version":1}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"kind":"hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"kind":"Hash","version":3}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"kind":"Hash","version":"2"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/a","/b"],"kind":"Hash","version":2}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/a","/b","/c","/d"],"kind":"MultiHash","version":2}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":[],"kind":"Hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":"/pk","kind":"Hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":{"0":"/pk"},"kind":"Hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"kind":{"name":"Hash"}}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/pk"],"version":[2]}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":[1],"kind":"Hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":[["/pk"]],"kind":"Hash"}}');
SELECT parse_container('{"id":"c","partitionKey":{"paths":["/' || repeat('x', 70) || '"]}}');
SELECT parse_container('{"id":"c","partitionKey":null}');
SELECT parse_container('{"id":"c","partitionKey":["/pk"]}');
SELECT parse_container('{"id":"c"}');
SELECT parse_container('[{"id":"c"}]');
SELECT parse_container('{"id":"c",');

--
-- Partition key ranges
--
-- the test server: one range whose id is the number 0
SELECT parse_pkranges('{"_rid":"x1Y=","PartitionKeyRanges":[{"_rid":"x1Y=AgAAAAAAAAA=","id":0,"_etag":"\"1\"","minInclusive":"","maxExclusive":"FF","ridPrefix":0,"_self":"dbs/x/colls/y/pkranges/z/","throughputFraction":1,"status":"online","parents":[],"_ts":1}],"_count":1}');
-- after two splits: 0 became 1 and 2, then 2 became 3 and 4; the feed still lists 0 and 2
SELECT parse_pkranges('{"_rid":"x1Y=","PartitionKeyRanges":[
  {"id":"4","minInclusive":"05C1E399CD6732","maxExclusive":"FF","ridPrefix":4,"throughputFraction":0.25,"status":"online","parents":["0","2"],"ownedArchivalPKRangeIds":["2"],"lsn":12},
  {"id":"0","minInclusive":"","maxExclusive":"FF","ridPrefix":0,"throughputFraction":1,"status":"online","parents":[]},
  {"id":"2","minInclusive":"05C1C9CD673398","maxExclusive":"FF","ridPrefix":2,"throughputFraction":0.5,"status":"online","parents":["0"]},
  {"id":"3","minInclusive":"05C1C9CD673398","maxExclusive":"05C1E399CD6732","ridPrefix":3,"throughputFraction":0.25,"status":"online","parents":["0","2"]},
  {"id":"1","minInclusive":"","maxExclusive":"05C1C9CD673398","ridPrefix":1,"throughputFraction":0.5,"status":"online","parents":["0"]}],
  "_count":5}');
-- unsorted input, lowercase bounds, numeric parent ids
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":2,"minInclusive":"bf","maxExclusive":"FF","parents":[0]},
                                               {"id":1,"minInclusive":"7f","maxExclusive":"bf"},
                                               {"id":3,"minInclusive":"","maxExclusive":"7F","parents":null}]}');
-- errors
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"1","minInclusive":"","maxExclusive":"40"},{"id":"2","minInclusive":"50","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"1","minInclusive":"","maxExclusive":"60"},{"id":"2","minInclusive":"50","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"1","minInclusive":"10","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"1","minInclusive":"","maxExclusive":"7F"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"1","minInclusive":"","maxExclusive":"FF"},{"id":"2","minInclusive":"","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"1","minInclusive":"","maxExclusive":""},{"id":"2","minInclusive":"","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"0","minInclusive":"","maxExclusive":"FF","parents":["0"]}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"0","minInclusive":""}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"minInclusive":"","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"0","minInclusive":"","maxExclusive":"FF"},{"id":"1","minInclusive":"","maxExclusive":"FF","parents":["0"]},{"id":"2","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"0","minInclusive":"","maxExclusive":"XYZ"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"0","minInclusive":null,"maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":true,"minInclusive":"","maxExclusive":"FF"}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":[{"id":"0","minInclusive":"","maxExclusive":"FF","parents":[{}]}]}');
SELECT parse_pkranges('{"PartitionKeyRanges":["0"]}');
SELECT parse_pkranges('{"PartitionKeyRanges":{"id":"0"}}');
SELECT parse_pkranges('{"_rid":"x","_count":0}');
SELECT parse_pkranges('[]');
SELECT parse_pkranges('{"PartitionKeyRanges":[');

--
-- Finding the range of an effective partition key: min <= epk < max
--
CREATE TABLE ranges3 AS SELECT '{"PartitionKeyRanges":[
  {"id":"4","minInclusive":"05C1E399CD6732","maxExclusive":"FF","parents":["0","2"]},
  {"id":"0","minInclusive":"","maxExclusive":"FF"},
  {"id":"2","minInclusive":"05C1C9CD673398","maxExclusive":"FF","parents":["0"]},
  {"id":"3","minInclusive":"05C1C9CD673398","maxExclusive":"05C1E399CD6732","parents":["0","2"]},
  {"id":"1","minInclusive":"","maxExclusive":"05C1C9CD673398","parents":["0"]}]}'::text AS r;
SELECT epk, find_range(r, epk)
FROM ranges3, (VALUES (''), ('00'), ('05C1C9CD67339'), ('05C1C9CD673397FF'), ('05C1C9CD673398'),
                      ('05C1C9CD67339800'), ('05C1E399CD6731FFFFFFFFFFFFFFFFFF'), ('05C1E399CD6732'),
                      ('05C1E399CD673200'), ('3FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF'), ('FE'), ('FF')) v(epk);
SELECT find_range('{"PartitionKeyRanges":[{"id":0,"minInclusive":"","maxExclusive":"FF"}]}', epk)
FROM (VALUES (''), ('1D6D0A4C3A15E1A8'), ('FF')) v(epk);
SELECT epk, find_range('{"PartitionKeyRanges":[{"id":"a","minInclusive":"","maxExclusive":"7F"},{"id":"b","minInclusive":"7F","maxExclusive":"FF"}]}', epk)
FROM (VALUES ('7E'), ('7EFF'), ('7F'), ('7F00')) v(epk);
SELECT find_range('{"PartitionKeyRanges":[]}', '00');

--
-- Error bodies: code and message on one line, at most 300 bytes
--
SELECT error_message('{"code":"BadRequest","message":"Message: {\"Errors\":[\"One of the specified inputs is invalid\"]}\r\nActivityId: 5b1f6f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b, Request URI: /apps/a/services/b/partitions/c/replicas/d, RequestStats: , SDK: Microsoft.Azure.Documents.Common/2.14.0"}');
SELECT error_message('{"code":"Conflict","message":"Entity with the specified id already exists in the system.,\r\nRequestStartTime: 2024-04-27T00:51:12Z"}');
SELECT error_message('{"message":"no route"}');
SELECT error_message('{"code":"NotFound"}');
SELECT error_message('{"code":429,"message":"Request rate is large.\tRetry later: é"}');
SELECT error_message('{"x":{"code":"inner","message":"inner"},"message":"outer"}');
-- long messages are cut at 300 bytes, on a character boundary
SELECT octet_length(m), right(m, 8) FROM (SELECT error_message(json_build_object('code', 'BadRequest', 'message', repeat('word ', 100))::text) m) s;
SELECT octet_length(m), right(m, 8) FROM (SELECT error_message(json_build_object('code', 'X', 'message', repeat('é', 200))::text) m) s;
-- not JSON, or JSON without code or message: the first 200 bytes, printable ASCII only
SELECT error_message(E'<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body>\r\n</html>\r\n');
SELECT error_message('Service Unavailable: é');
SELECT error_message('{"error":"x"}');
SELECT error_message('[1,2]');
SELECT octet_length(m), right(m, 8) FROM (SELECT error_message(repeat('x', 500)) m) s;
SELECT error_message_bytes('\x476174657761793aff0001fe20666169');
SELECT error_message('');
SELECT error_message(E' \r\n ');

--
-- In a database that is not UTF8 the JSON lexer would convert \u escapes to
-- the server encoding and throw if it cannot: such input is refused instead
--
\set regress_db :DBNAME
CREATE DATABASE cosmos_test_protocol_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c cosmos_test_protocol_ascii
CREATE FUNCTION pk_header(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_pk_header' LANGUAGE C STRICT;
CREATE FUNCTION error_message(text) RETURNS text
    AS '$libdir/cosmos_sink', 'cosmos_test_error_message' LANGUAGE C STRICT;
SELECT pk_header('["\u0041", "é"]');
SELECT pk_header('["\u00e9"]');
SELECT pk_header('["\\u00e9"]');
SELECT error_message('{"code":"X","message":"caf\u00e9 é"}');
SELECT error_message('{"code":"X","message":"cafe é"}');
\c :regress_db
DROP DATABASE cosmos_test_protocol_ascii;

-- hostile nesting is refused before the parser could run out of stack
SET search_path = cosmos_test_protocol;
SELECT parse_batch(repeat('[', 20000), 1) AS deep_array;
SELECT parse_pkranges('{"PartitionKeyRanges":' || repeat('{"a":', 20000)) AS deep_object;
SELECT left(error_message(repeat('[', 20000)), 40) AS deep_error_body;
SELECT parse_batch('[{"statusCode":200,"resourceBody":{"s":"' || repeat('[', 20000) || '"}}]', 1) AS brackets_in_strings_are_fine;
-- many objects side by side are not deep (a container split into 300 ranges)
SELECT split_part(parse_pkranges('{"PartitionKeyRanges":[' || string_agg(format('{"id":"%s","minInclusive":"%s","maxExclusive":"%s"}',
         g, CASE WHEN g = 0 THEN '' ELSE lpad(to_hex(g), 4, '0') END, CASE WHEN g = 299 THEN 'FF' ELSE lpad(to_hex(g + 1), 4, '0') END), ',') || ']}'), E'\n', 300) AS the_300th_range
  FROM generate_series(0, 299) g;

-- offers (provisioned throughput, max_ru_per_second = 'auto'): the container's
-- resource ids, the query, and its answer as the service gives it
SET search_path = cosmos_test_protocol;
SELECT parse_resource_ids('{"id":"orders","_rid":"yEcCAPX6aAw=","_self":"dbs/yEcCAA==/colls/yEcCAPX6aAw=/","partitionKey":{"paths":["/k"]}}');
SELECT parse_resource_ids('{"id":"orders","_rid":"yEcCAPX6aAw="}') AS no_self;
SELECT parse_resource_ids('{"_rid":"a\"b","_self":"dbs/x/colls/y/"}') AS rid_not_an_id;
SELECT parse_resource_ids('{"_rid":"yEcCAPX6aAw=","_self":"dbs/../colls/y/"}') AS db_not_an_id;
SELECT parse_resource_ids('{"_rid":"yEcCAPX6aAw=","_self":"colls/y/"}') AS self_misshapen;
SELECT parse_resource_ids('{"x":{"_rid":"nested","_self":"dbs/a/colls/b/"}}') AS nested_ids_ignored;
SELECT offer_query('yEcCAPX6aAw=', 'yEcCAA==');
SELECT offer_query('a"b', 'c\d') AS escaped;
-- manual, autoscale (its maximum counts), the container's own offer before its database's
SELECT parse_offers('{"_rid":"","Offers":[{"offerVersion":"V2","content":{"offerThroughput":500},"resource":"dbs/yEcCAA==/colls/yEcCAPX6aAw=/","offerResourceId":"yEcCAPX6aAw=","id":"Hu+t"}],"_count":1}', 'yEcCAPX6aAw=', 'yEcCAA==');
SELECT parse_offers('{"Offers":[{"content":{"offerThroughput":400,"offerAutopilotSettings":{"tier":0,"maxThroughput":4000,"autoUpgrade":false}},"offerResourceId":"C"}]}', 'C', 'D');
SELECT parse_offers('{"Offers":[{"offerResourceId":"D","content":{"offerThroughput":2000}},{"offerResourceId":"C","content":{"offerThroughput":700}}]}', 'C', 'D') AS own_wins;
SELECT parse_offers('{"Offers":[{"offerResourceId":"D","content":{"offerThroughput":2000}}]}', 'C', 'D') AS shared;
SELECT parse_offers('{"Offers":[],"_count":0}', 'C', 'D') AS serverless_or_none;
SELECT parse_offers('{"Offers":[{"offerResourceId":"E","content":{"offerThroughput":900}}]}', 'C', 'D') AS another_resource;
-- hostile answers: refused with a reason, never a budget
SELECT parse_offers('{"Offers":[{"offerResourceId":"C","content":{"offerThroughput":-5}}]}', 'C', 'D') AS negative;
SELECT parse_offers('{"Offers":[{"offerResourceId":"C","content":{"offerThroughput":"lots"}}]}', 'C', 'D') AS string_figure;
SELECT parse_offers('{"Offers":[{"offerResourceId":"C","content":{"offerThroughput":1e300}}]}', 'C', 'D') AS absurd;
SELECT parse_offers('{"Offers":[{"offerResourceId":"C","content":{"offerThroughput":0.001}}]}', 'C', 'D') AS tiny_would_stall;
SELECT parse_offers('{"Offers":{"offerResourceId":"C"}}', 'C', 'D') AS not_a_list;
SELECT parse_offers('{"Offers":[{"offerResourceId":7}]}', 'C', 'D') AS id_not_a_string;
SELECT parse_offers('[]', 'C', 'D') AS not_an_object;
SELECT parse_offers('{"offers":[]}', 'C', 'D') AS no_list;
SELECT parse_offers('{"Offers":[{"offerResourceId":"C","content":{"x":{"offerThroughput":5}}}]}', 'C', 'D') AS nested_figure_ignored;
SELECT parse_offers('{"Offers":[' || repeat('{"offerResourceId":"E"},', 999) || '{"offerResourceId":"C","content":{"offerThroughput":400}}]}', 'C', 'D') AS a_thousand;
SELECT parse_offers('{"Offers":[' || repeat('{"offerResourceId":"E"},', 1000) || '{}]}', 'C', 'D') AS too_many;

RESET search_path;
DROP SCHEMA cosmos_test_protocol CASCADE;
