package platsync;

import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.transforms.Transformation;

/**
 * Drops the row changes of echo transactions inside the Debezium engine, before they are
 * converted to JSON and handed to Python.
 *
 * <p>The same rule as {@code connectors/capture/envelope.py} (TransactionStamper): the first
 * {@code platsync_txn_marker} insert of a transaction stamps it; a transaction whose marker has
 * {@code applied_by_sync} or an {@code origin_side} other than this capture's side is the engine's
 * own apply, and its changes of synced tables must not be sent back. PostgreSQL 15's pgoutput
 * cannot leave them out, and converting each one only for Python to drop it cost about as much
 * CPU as capturing a real change. Everything else passes unchanged (markers included), so the
 * Python stamper stays the authority: a row this filter lets through is judged there again.
 */
public class EchoFilter<R extends ConnectRecord<R>> implements Transformation<R> {

    private static final Map<String, AtomicLong> DROPPED = new ConcurrentHashMap<>();

    private String side;
    private String markerTable;
    private Set<String> syncedTables;
    private AtomicLong dropped;
    private Map<Long, Boolean> echoByTxid;

    /** Row changes dropped so far by the filters configured with {@code name}. */
    public static long dropped(String name) {
        AtomicLong count = DROPPED.get(name);
        return count == null ? 0L : count.get();
    }

    @Override
    public void configure(Map<String, ?> configs) {
        side = required(configs, "side");
        markerTable = required(configs, "marker.table");
        syncedTables = new HashSet<>(Arrays.asList(required(configs, "synced.tables").split(",")));
        dropped = DROPPED.computeIfAbsent(required(configs, "name"), k -> new AtomicLong());
        final int maxTransactions = Integer.parseInt(required(configs, "max.transactions"));
        echoByTxid = new LinkedHashMap<Long, Boolean>(64, 0.75f, false) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, Boolean> eldest) {
                return size() > maxTransactions;
            }
        };
    }

    private static String required(Map<String, ?> configs, String key) {
        Object value = configs.get(key);
        if (value == null || value.toString().isEmpty()) {
            throw new IllegalArgumentException("platsync.EchoFilter needs the property '" + key + "'");
        }
        return value.toString();
    }

    @Override
    public R apply(R record) {
        if (!(record.value() instanceof Struct)) {
            return record; // heartbeats, tombstones: not ours to judge
        }
        Struct envelope = (Struct) record.value();
        Struct source = struct(envelope, "source");
        if (source == null) {
            return record;
        }
        Object table = get(source, "table");
        Object txid = get(source, "txId");
        if (!(table instanceof String) || !(txid instanceof Long)) {
            return record;
        }
        if (markerTable.equals(table)) {
            remember((Long) txid, envelope);
            return record;
        }
        if (syncedTables.contains(table) && Boolean.TRUE.equals(echoByTxid.get(txid))) {
            dropped.incrementAndGet();
            return null;
        }
        return record;
    }

    private void remember(Long txid, Struct envelope) {
        Object op = get(envelope, "op");
        Struct after = struct(envelope, "after");
        if (after == null || !("c".equals(op) || "r".equals(op)) || echoByTxid.containsKey(txid)) {
            return; // the first marker of a transaction wins, as in the Python stamper
        }
        Object origin = get(after, "origin_side");
        Object bySync = get(after, "applied_by_sync");
        if (!(origin instanceof String)) {
            return; // malformed: the Python stamper reports it
        }
        echoByTxid.put(txid, Boolean.TRUE.equals(bySync) || !side.equals(origin));
    }

    private static Object get(Struct struct, String name) {
        Field field = struct.schema().field(name);
        return field == null ? null : struct.get(field);
    }

    private static Struct struct(Struct parent, String name) {
        Object value = get(parent, name);
        return value instanceof Struct ? (Struct) value : null;
    }

    @Override
    public ConfigDef config() {
        return new ConfigDef();
    }

    @Override
    public void close() {
    }
}
