package platsync;

import java.util.List;

import io.debezium.engine.ChangeEvent;

/**
 * Joins the JSON values of one Debezium batch into one string, so that Python fetches a batch in
 * one call instead of two JNI crossings (value(), toString()) per record
 * ({@code connectors/capture/batch_values.py}).
 *
 * <p>Values are separated by a newline: Kafka Connect's JsonConverter writes compact JSON, in
 * which a newline can only appear escaped. A null value (a tombstone) is an empty line.
 */
public final class BatchValues {

    private BatchValues() {
    }

    /** The values of {@code records}, newline-separated; null values as empty lines. */
    public static String values(List<? extends ChangeEvent<?, ?>> records) {
        StringBuilder text = new StringBuilder(records.size() * 512);
        for (int i = 0; i < records.size(); i++) {
            if (i > 0) {
                text.append('\n');
            }
            Object value = records.get(i).value();
            if (value != null) {
                text.append(value.toString());
            }
        }
        return text.toString();
    }
}
