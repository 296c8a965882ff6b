/*
 * FlinkJdbcSink.java - a stand-in for Apache Flink's JDBC sink in upsert mode,
 * writing a deterministic stream of changes into a cosmos_sink staging table
 * over the real PostgreSQL JDBC driver: per batch, changes are reduced by key
 * (last change wins, like Flink's TableBufferReducedStatementExecutor), then
 * one executeBatch of
 *   INSERT INTO t (...) VALUES (...) ON CONFLICT (order_id) DO UPDATE SET col = EXCLUDED.col, ...
 * and one of DELETE FROM t WHERE order_id = ?, committed as one transaction
 * (autocommit off). --replay N re-sends the last N batches afterwards, as
 * Flink does after restoring a checkpoint (at-least-once), which leaves the
 * final table state unchanged.
 *
 * Build: javac -cp /usr/share/java/postgresql.jar -d OUT FlinkJdbcSink.java
 * Run:   java -cp OUT:/usr/share/java/postgresql.jar FlinkJdbcSink \
 *          --url 'jdbc:postgresql://127.0.0.1:5432/app?user=postgres' --table orders_staging \
 *          --create --rows 10000 --keys 2000 --partitions 50 --batch 500 --rate 0 \
 *          --delete-pct 10 --replay 3 --seed 1 --payload 100
 * Table: (order_id bigint PRIMARY KEY, customer_id text NOT NULL,
 *         amount numeric(12,2), status text, payload text, updated_at timestamptz)
 * --create makes it if missing (REPLICA IDENTITY FULL unless
 * --replica-identity default). --move-pct M: M% of upserts give the order a
 * random customer (partition key change) instead of its home customer
 * (order_id % partitions). Progress goes to stderr; one JSON summary line to
 * stdout: {"changes":..,"batches":..,"upserts":..,"deletes":..,"replayed_batches":..,"seconds":..}
 */

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

public final class FlinkJdbcSink {

	static final String[] STATUSES = {"NEW", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"};
	static final char[] ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ".toCharArray();
	/* Fixed base instant so updated_at is deterministic for a given seed */
	static final Instant BASE_TIME = Instant.parse("2024-01-01T00:00:00Z");

	/* One change of the stream: an upsert (row values) or a delete (key only) */
	record Change(boolean delete, long orderId, String customerId, BigDecimal amount,
				  String status, String payload, OffsetDateTime updatedAt) {}

	public static void main(String[] argv) throws Exception {
		Map<String, String> a = parseArgs(argv);
		String url = req(a, "url");
		String table = a.getOrDefault("table", "orders_staging");
		long rows = Long.parseLong(a.getOrDefault("rows", "10000"));
		long keys = Long.parseLong(a.getOrDefault("keys", "1000"));
		int partitions = Integer.parseInt(a.getOrDefault("partitions", "10"));
		int batch = Integer.parseInt(a.getOrDefault("batch", "500"));
		double rate = Double.parseDouble(a.getOrDefault("rate", "0"));
		double deletePct = Double.parseDouble(a.getOrDefault("delete-pct", "0"));
		double movePct = Double.parseDouble(a.getOrDefault("move-pct", "0"));
		int replay = Integer.parseInt(a.getOrDefault("replay", "0"));
		long seed = Long.parseLong(a.getOrDefault("seed", "1"));
		int payloadBytes = Integer.parseInt(a.getOrDefault("payload", "64"));
		boolean create = a.containsKey("create");
		String replicaIdentity = a.getOrDefault("replica-identity", "full");
		if (keys < 1 || partitions < 1 || batch < 1 || rows < 0)
			die("--keys, --partitions and --batch must be >= 1, --rows >= 0");

		SplittableRandom rnd = new SplittableRandom(seed);
		long started = System.nanoTime();
		long changes = 0, batches = 0, upserts = 0, deletes = 0, replayed = 0;
		long lastProgress = started;
		ArrayDeque<List<Change>> history = new ArrayDeque<>();

		/* Live keys as the generator believes them (deletes target live keys) */
		long[] liveKeys = new long[(int) Math.min(keys, Integer.MAX_VALUE - 8)];
		int liveCount = 0;
		Map<Long, Integer> livePos = new HashMap<>();

		try (Connection conn = DriverManager.getConnection(url)) {
			if (create)
				createTable(conn, table, replicaIdentity);
			conn.setAutoCommit(false);
			String cols = "order_id, customer_id, amount, status, payload, updated_at";
			String upsertSql = "INSERT INTO " + table + " (" + cols + ") VALUES (?, ?, ?, ?, ?, ?) "
				+ "ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, "
				+ "amount = EXCLUDED.amount, status = EXCLUDED.status, payload = EXCLUDED.payload, "
				+ "updated_at = EXCLUDED.updated_at";
			String deleteSql = "DELETE FROM " + table + " WHERE order_id = ?";
			try (PreparedStatement up = conn.prepareStatement(upsertSql);
				 PreparedStatement del = conn.prepareStatement(deleteSql)) {
				while (changes < rows) {
					int n = (int) Math.min(batch, rows - changes);
					/* Flink's reduce buffer: last change per key wins, in first-seen key order */
					LinkedHashMap<Long, Change> buffer = new LinkedHashMap<>();
					for (int i = 0; i < n; i++) {
						long seq = changes + i;
						Change c;
						boolean del0 = liveCount > 0 && rnd.nextDouble() * 100.0 < deletePct;
						if (del0) {
							int idx = rnd.nextInt(liveCount);
							long k = liveKeys[idx];
							/* swap-remove from the live set */
							long lastKey = liveKeys[liveCount - 1];
							liveKeys[idx] = lastKey;
							livePos.put(lastKey, idx);
							livePos.remove(k);
							liveCount--;
							c = new Change(true, k, null, null, null, null, null);
						} else {
							long k = 1 + rnd.nextLong(keys);
							long cust = (movePct > 0 && rnd.nextDouble() * 100.0 < movePct)
								? rnd.nextInt(partitions) : k % partitions;
							BigDecimal amount = BigDecimal.valueOf(rnd.nextLong(100_000_000L), 2);
							int s = rnd.nextInt(STATUSES.length + 1);
							String status = s == STATUSES.length ? null : STATUSES[s];
							String payload = randomText(rnd, payloadBytes);
							OffsetDateTime at = OffsetDateTime.ofInstant(BASE_TIME.plusMillis(seq), ZoneOffset.UTC);
							c = new Change(false, k, "cust-" + cust, amount, status, payload, at);
							if (!livePos.containsKey(k) && liveCount < liveKeys.length) {
								liveKeys[liveCount] = k;
								livePos.put(k, liveCount++);
							}
						}
						buffer.remove(c.orderId());
						buffer.put(c.orderId(), c);
					}
					List<Change> reduced = new ArrayList<>(buffer.values());
					long[] counts = sendBatch(conn, up, del, reduced);
					upserts += counts[0];
					deletes += counts[1];
					changes += n;
					batches++;
					if (replay > 0) {
						history.addLast(reduced);
						if (history.size() > replay)
							history.removeFirst();
					}
					if (rate > 0) {
						long dueNanos = (long) (changes / rate * 1e9);
						long sleepMs = (dueNanos - (System.nanoTime() - started)) / 1_000_000L;
						if (sleepMs > 0)
							Thread.sleep(sleepMs);
					}
					long now = System.nanoTime();
					if (now - lastProgress > 1_000_000_000L) {
						lastProgress = now;
						double secs = (now - started) / 1e9;
						System.err.printf("progress changes=%d batches=%d upserts=%d deletes=%d rate=%.0f/s%n",
										  changes, batches, upserts, deletes, changes / secs);
					}
				}
				/* Restore from a checkpoint: the last N batches arrive again */
				for (List<Change> b : history) {
					long[] counts = sendBatch(conn, up, del, b);
					upserts += counts[0];
					deletes += counts[1];
					replayed++;
				}
				if (replayed > 0)
					System.err.printf("replayed %d batches%n", replayed);
			}
		} catch (SQLException e) {
			SQLException next = e.getNextException();
			die("SQL error: " + e.getMessage() + (next != null ? " / " + next.getMessage() : ""));
		}
		double seconds = (System.nanoTime() - started) / 1e9;
		System.out.printf("{\"changes\":%d,\"batches\":%d,\"upserts\":%d,\"deletes\":%d,\"replayed_batches\":%d,\"seconds\":%.3f}%n",
						  changes, batches, upserts, deletes, replayed, seconds);
	}

	/* One JDBC batch of upserts and one of deletes, committed together; returns {upserts, deletes} */
	static long[] sendBatch(Connection conn, PreparedStatement up, PreparedStatement del, List<Change> changes)
		throws SQLException {
		long u = 0, d = 0;
		for (Change c : changes) {
			if (c.delete()) {
				del.setLong(1, c.orderId());
				del.addBatch();
				d++;
			} else {
				up.setLong(1, c.orderId());
				up.setString(2, c.customerId());
				up.setBigDecimal(3, c.amount());
				if (c.status() == null)
					up.setNull(4, Types.VARCHAR);
				else
					up.setString(4, c.status());
				up.setString(5, c.payload());
				up.setObject(6, c.updatedAt());
				up.addBatch();
				u++;
			}
		}
		try {
			if (u > 0)
				up.executeBatch();
			if (d > 0)
				del.executeBatch();
			conn.commit();
		} catch (SQLException e) {
			try {
				conn.rollback();
			} catch (SQLException ignored) {
			}
			throw e;
		}
		return new long[] {u, d};
	}

	static void createTable(Connection conn, String table, String replicaIdentity) throws SQLException {
		try (Statement st = conn.createStatement()) {
			st.execute("CREATE TABLE IF NOT EXISTS " + table + " (order_id bigint PRIMARY KEY, "
					   + "customer_id text NOT NULL, amount numeric(12,2), status text, payload text, "
					   + "updated_at timestamptz)");
			if (replicaIdentity.equalsIgnoreCase("full"))
				st.execute("ALTER TABLE " + table + " REPLICA IDENTITY FULL");
		}
	}

	static String randomText(SplittableRandom rnd, int len) {
		char[] out = new char[len];
		for (int i = 0; i < len; i++)
			out[i] = ALPHABET[rnd.nextInt(ALPHABET.length)];
		return new String(out);
	}

	static Map<String, String> parseArgs(String[] argv) {
		Map<String, String> m = new HashMap<>();
		for (int i = 0; i < argv.length; i++) {
			String s = argv[i];
			if (!s.startsWith("--"))
				die("unexpected argument: " + s);
			String key = s.substring(2);
			int eq = key.indexOf('=');
			if (eq >= 0)
				m.put(key.substring(0, eq), key.substring(eq + 1));
			else if (key.equals("create"))
				m.put(key, "true");
			else if (i + 1 < argv.length)
				m.put(key, argv[++i]);
			else
				die("missing value for --" + key);
		}
		return m;
	}

	static String req(Map<String, String> a, String k) {
		String v = a.get(k);
		if (v == null)
			die("--" + k + " is required");
		return v;
	}

	static void die(String msg) {
		System.err.println("FlinkJdbcSink: " + msg);
		System.exit(2);
	}
}
