/*
 * A corrected copy of the timer that Debezium 3.6.3's io.debezium.util.Threads.timer() returns
 * (compiled there as the anonymous class Threads$2; same binary name, fields and constructor).
 *
 * Debezium's timer expires only when the elapsed milliseconds EXCEED the timeout, while
 * remaining() is already zero when they EQUAL it. ChangeEventQueue.poll() waits only while
 * remaining() is positive, so at the end of every poll interval it spins on the clock for up
 * to a millisecond: ~0.9 ms of CPU per poll, 20 polls a second per captured database at
 * poll.interval.ms = 50 (bench/RESULTS.md, issue 19). Here the timer expires when the elapsed
 * time reaches the timeout, so the queue never spins. Loaded ahead of Debezium's jars, and only
 * for the Debezium version this was written against (connectors/capture/timer_fix.py).
 */
package io.debezium.util;

import java.time.Duration;
import java.time.temporal.ChronoUnit;

final class Threads$2 implements Threads.Timer {
    final Threads.TimeSince val$start;
    final Duration val$time;

    Threads$2(Threads.TimeSince start, Duration time) {
        this.val$start = start;
        this.val$time = time;
    }

    @Override
    public boolean expired() {
        return val$start.elapsedTime() >= val$time.toMillis();
    }

    @Override
    public Duration remaining() {
        return val$time.minus(val$start.elapsedTime(), ChronoUnit.MILLIS);
    }

    /** Lets the capture check that this class, not Debezium's, was loaded. */
    public static boolean platsyncTimerFix() {
        return true;
    }
}
