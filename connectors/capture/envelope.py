"""Debezium envelope -> :class:`ChangeEvent`, stamped with the API of its transaction. Pure.

No Kafka, no JVM, no I/O: :class:`TransactionStamper` turns the key/value JSON strings that the
Debezium PostgreSQL connector delivers (``handleJsonBatch``) into change events:

- a ``platsync_txn_marker`` insert is remembered by the transaction id (``source.txId``) and
  not emitted; every later row change of the same transaction carries its ``api_id``,
  ``call_id`` and ``origin_side``;
- a change whose marker says it was applied by the engine on behalf of the other side
  (``origin_side != side``, or ``applied_by_sync``) is an echo: it is dropped and counted,
  which is the loop prevention at the source;
- an update (op ``u``) carries its normalised before-image in ``before`` (the synced tables are
  REPLICA IDENTITY FULL): the sinks use it to tell a fast-forward from a concurrent edit;
- a row change without a marker becomes an event with ``api_id=None`` and ``origin_side=side``
  (the router dead-letters it as an unknown API);
- a ``platsync_probe`` insert becomes an ``op="probe"`` event keyed by its ``probe_id``;
- tombstones, heartbeats, logical decoding messages (the heartbeat action query emits one per
  interval, and every slot of the database sees it), truncates and changes of other tables are
  ignored (and counted).

Markers are kept for the last ``max_transactions`` transactions only (bounded memory); pgoutput
delivers whole transactions in commit order, so only the current one is ever needed. The runner
persists :meth:`TransactionStamper.markers_state` after each batch so that a restart which resumes
in the middle of a transaction (after the marker) still stamps the rest of it.

A row whose transaction has no marker in memory asks ``lookup_marker`` (the runner's reads the
store's ``platsync_txn_marker`` table; once per transaction). Debezium's resume after a restart can
drop the first change of the first transaction it streams (when that change sits exactly at the
stored commit-end position, it is taken for the last one processed), and by the integration
contract that first change is always the marker: the lookup finds it again, where the rows would
otherwise go out unmarked (dead-lettered as an unknown API) or, for an echo, be sent back.

The connector runs with ``time.precision.mode=isostring``, ``decimal.handling.mode=string`` and
``binary.handling.mode=base64`` and without JSON schemas: temporal values already are ISO-8601
strings (except that Debezium renders a ``date`` as ``"1980-02-29Z"``: the ``Z`` is removed so that
``date.fromisoformat`` accepts it); ``bytea`` columns (known from the store's reference schema)
are base64-decoded to bytes.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date, LargeBinary

from connectors.stores.tables import SYNCED_TABLES, metadata_for
from streams.core.errors import PlatSyncError
from streams.core.model import ChangeEvent, RowValue

MARKER_TABLE = "platsync_txn_marker"
#: Transactions whose markers are remembered (also the bound of the Java echo filter).
MAX_TRANSACTIONS = 256
PROBE_TABLE = "platsync_probe"
ROW_OPS = frozenset(("c", "u", "d", "r"))


class EnvelopeError(PlatSyncError, ValueError):
    """A Debezium record is not valid JSON or not a change envelope this capture understands."""


@dataclass(frozen=True)
class Marker:
    """The API stamp of one source transaction (a ``platsync_txn_marker`` row)."""

    api_id: str
    call_id: str | None
    origin_side: str
    applied_by_sync: bool

    def is_echo(self, side: str) -> bool:
        """True if the transaction was the engine reproducing a change (must not be sent back)."""
        return self.applied_by_sync or self.origin_side != side


#: Finds the marker of a transaction (by its 32-bit ``source.txId``) whose marker row was not delivered.
MarkerLookup = Callable[[int], "Marker | None"]

_TXID = re.compile(r'"txId"\s*:\s*(\d+)')
_TABLE = re.compile(r'"table"\s*:\s*"([^"\\]*)"')


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TransactionStamper:
    """Converts the Debezium records of one captured database into stamped change events."""

    def __init__(self, side: str, store: str, *, max_transactions: int = MAX_TRANSACTIONS,
                 clock: Callable[[], int] = _now_ms, lookup_marker: MarkerLookup | None = None) -> None:
        if store not in SYNCED_TABLES:
            raise ValueError(f"store {store!r} is not a captured database store")
        if max_transactions < 1:
            raise ValueError("max_transactions must be >= 1")
        self.side = side
        self.store = store
        self.max_transactions = max_transactions
        self._clock = clock
        self._synced = frozenset(SYNCED_TABLES[store])
        md = metadata_for(store)
        self._binary = {t: frozenset(c.name for c in md.tables[t].columns if isinstance(c.type, LargeBinary))
                        for t in self._synced}
        self._dates = {t: frozenset(c.name for c in md.tables[t].columns if isinstance(c.type, Date))
                       for t in self._synced}
        self._markers: OrderedDict[int, Marker] = OrderedDict()
        self._lookup_marker = lookup_marker
        self._looked_up: OrderedDict[int, None] = OrderedDict()  # transactions asked for (bounded)
        self._echo_txids: set[int] = set()  # transactions of self._markers that are echoes
        self._same_lsn: tuple[int, int, int] = (-1, -1, 0)  # (txid, lsn, changes seen at that lsn)
        #: Counters since construction (the runner adds the ones restored from its progress file).
        self.events = 0
        self.echoes_dropped = 0
        self.probes = 0
        self.unmarked = 0
        #: Markers found by ``lookup_marker`` because their row never arrived.
        self.markers_recovered = 0
        self.ignored = 0
        self.last_lsn = 0
        self.last_commit_ts_ms = 0
        #: How many markers were ever added: changes whenever :meth:`markers_state` does.
        self.markers_version = 0

    # -- public API ---------------------------------------------------------------------------

    def convert(self, key_json: str | None, value_json: str | None) -> list[ChangeEvent]:
        """Convert one Debezium record; return the events to publish (zero or one).

        Raises :class:`EnvelopeError` if the record is malformed.
        """
        if value_json is None:  # tombstone
            self.ignored += 1
            return []
        if self._echo_txids and self._is_echo_row(value_json):
            self.echoes_dropped += 1
            return []
        if key_json is not None:
            self._loads(key_json, "key")
        value = self._loads(value_json, "value")
        if not isinstance(value, dict):
            raise EnvelopeError(f"value is a JSON {type(value).__name__}, expected an object: {value_json[:200]!r}")
        if set(value) == {"schema", "payload"}:  # converter.schemas.enable=true
            value = value["payload"]
            if value is None:
                self.ignored += 1
                return []
        op = value.get("op")
        if op not in ROW_OPS:  # heartbeat (no op), logical message ("m"), truncate ("t")
            self.ignored += 1
            return []
        source = value.get("source")
        if not isinstance(source, dict):
            raise EnvelopeError(f"change envelope without a source block: {value_json[:200]!r}")
        table = _field(source, "table", str, value_json)
        txid = _field(source, "txId", int, value_json)
        lsn = _field(source, "lsn", int, value_json)
        commit_ts = _field(source, "ts_ms", int, value_json)
        self.last_lsn, self.last_commit_ts_ms = lsn, commit_ts
        ordinal = self._ordinal(txid, lsn)

        if table == MARKER_TABLE:
            if op in ("c", "r"):
                self._remember(txid, _image(value, "after", value_json))
            else:
                self.ignored += 1
            return []
        marker = self._markers.get(txid)
        if table == PROBE_TABLE:
            if op not in ("c", "r"):
                self.ignored += 1
                return []
            after = _image(value, "after", value_json)
            self.probes += 1
            return [self._event(ordinal, table, "probe", str(_need(after, "probe_id", value_json)), 0, None,
                                marker, lsn, txid, commit_ts)]
        if table not in self._synced:
            self.ignored += 1
            return []
        if marker is None:
            marker = self._recover_marker(txid)
        if marker is not None and marker.is_echo(self.side):
            self.echoes_dropped += 1
            return []
        image = _image(value, "before" if op == "d" else "after", value_json)
        version = _need(image, "version", value_json)
        if not isinstance(version, int) or isinstance(version, bool):
            raise EnvelopeError(f"{table}: version {version!r} is not an integer")
        row = None if op == "d" else self._normalise(table, image)
        before = value.get("before") if op == "u" else None
        if marker is None:
            self.unmarked += 1
        return [self._event(ordinal, table, op, str(_need(image, "id", value_json)), version, row,
                            marker, lsn, txid, commit_ts,
                            self._normalise(table, before) if isinstance(before, dict) else None)]

    def _is_echo_row(self, value_json: str) -> bool:
        """Cheaply recognise a row change of an echo transaction without parsing its JSON.

        The engine's own applies are captured too (PostgreSQL 15's pgoutput cannot filter them by
        origin), and they are as many as the changes it applies: parsing each one only to drop it
        was a large part of the capture's cost. The ``source`` block comes after the row images,
        and a key can only appear unescaped outside string values, so the last ``"txId":`` and
        ``"table":"`` are the envelope's own.
        """
        at = value_json.rfind('"txId"')
        txid = _TXID.match(value_json, at) if at >= 0 else None
        if txid is None or int(txid.group(1)) not in self._echo_txids:
            return False
        at = value_json.rfind('"table"')
        table = _TABLE.match(value_json, at) if at >= 0 else None
        return table is not None and table.group(1) in self._synced

    def markers_state(self) -> dict[str, dict[str, Any]]:
        """The remembered markers as JSON-friendly data (``{txid: marker fields}``), oldest first."""
        return {str(txid): _marker_fields(m) for txid, m in self._markers.items()}

    def markers_since(self, version: int) -> dict[str, dict[str, Any]] | None:
        """The markers added after :attr:`markers_version` was ``version``, as :meth:`markers_state`
        renders them, oldest first; None if some of them were already trimmed (save a whole snapshot)."""
        added = self.markers_version - version
        if added < 0 or added > len(self._markers):
            return None
        if added == 0:
            return {}
        newest = list(itertools.islice(reversed(self._markers.items()), added))
        return {str(txid): _marker_fields(m) for txid, m in reversed(newest)}

    def restore_markers(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore markers saved with :meth:`markers_state` (before the first :meth:`convert`)."""
        try:
            for txid, fields in state.items():
                self._add_marker(int(txid), Marker(
                    api_id=str(fields["api_id"]), call_id=fields.get("call_id"),
                    origin_side=str(fields["origin_side"]), applied_by_sync=bool(fields["applied_by_sync"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"invalid saved marker state: {exc}") from None
        self._trim()

    @property
    def open_transactions(self) -> int:
        """How many transactions' markers are remembered (at most ``max_transactions``)."""
        return len(self._markers)

    # -- internals ----------------------------------------------------------------------------

    def _remember(self, txid: int, after: dict[str, Any]) -> None:
        if txid in self._markers:  # the first marker of a transaction wins
            return
        api_id = after.get("api_id")
        origin = after.get("origin_side")
        if not isinstance(api_id, str) or not isinstance(origin, str):
            raise EnvelopeError(f"marker of transaction {txid} lacks api_id/origin_side: {after!r}")
        call_id = after.get("call_id")
        self._add_marker(txid, Marker(api_id, None if call_id is None else str(call_id), origin,
                                      bool(after.get("applied_by_sync"))))

    def _recover_marker(self, txid: int) -> Marker | None:
        """The marker of ``txid`` from ``lookup_marker`` (if any), asked once per transaction."""
        lookup = self._lookup_marker
        if lookup is None or txid in self._looked_up:
            return None
        self._looked_up[txid] = None
        while len(self._looked_up) > self.max_transactions:
            self._looked_up.popitem(last=False)
        marker = lookup(txid)
        if marker is not None:
            self.markers_recovered += 1
            self._add_marker(txid, marker)
        return marker

    def _add_marker(self, txid: int, marker: Marker) -> None:
        self._markers[txid] = marker
        self._markers.move_to_end(txid)  # the newest last, also when restored twice (markers_since)
        self.markers_version += 1
        if marker.is_echo(self.side):
            self._echo_txids.add(txid)
        self._trim()

    def _trim(self) -> None:
        while len(self._markers) > self.max_transactions:
            txid, _ = self._markers.popitem(last=False)
            self._echo_txids.discard(txid)

    def _ordinal(self, txid: int, lsn: int) -> int:
        """Index of this change among the changes sharing its LSN (multi-row WAL records)."""
        last_tx, last_lsn, seen = self._same_lsn
        n = seen if (txid, lsn) == (last_tx, last_lsn) else 0
        self._same_lsn = (txid, lsn, n + 1)
        return n

    def _normalise(self, table: str, image: dict[str, Any]) -> dict[str, RowValue]:
        binary, dates = self._binary[table], self._dates[table]
        row: dict[str, RowValue] = {}
        for name, value in image.items():
            if value is None or isinstance(value, (bool, int, float)):
                row[name] = value
            elif isinstance(value, str):
                if name in binary:
                    try:
                        row[name] = base64.b64decode(value, validate=True)
                    except (binascii.Error, ValueError):
                        raise EnvelopeError(f"{table}.{name}: bytea value is not base64") from None
                elif name in dates and value.endswith("Z"):
                    row[name] = value[:-1]  # isostring renders a date as "1980-02-29Z"
                else:
                    row[name] = value
            else:  # json/array columns: keep them as canonical JSON text
                row[name] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        return row

    def _event(self, ordinal: int, table: str, op: str, key: str, version: int,
               row: dict[str, RowValue] | None, marker: Marker | None, lsn: int, txid: int,
               commit_ts: int, before: dict[str, RowValue] | None = None) -> ChangeEvent:
        self.events += 1
        return ChangeEvent(
            event_id=f"{self.side}.{self.store}:{lsn}:{ordinal}",
            source_side=self.side,
            source_store=self.store,
            table=table,
            op=op,
            key=key,
            version=version,
            row=row,
            api_id=marker.api_id if marker else None,
            call_id=marker.call_id if marker else None,
            origin_side=marker.origin_side if marker else self.side,
            lsn=lsn,
            txid=txid,
            commit_ts_ms=commit_ts,
            captured_ts_ms=self._clock(),
            before=before,
        )

    @staticmethod
    def _loads(text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"{what} is not valid JSON ({exc}): {str(text)[:200]!r}") from None


def _marker_fields(m: Marker) -> dict[str, Any]:
    # Field by field, not dataclasses.asdict (a recursive deep copy): this runs after every batch.
    return {"api_id": m.api_id, "call_id": m.call_id, "origin_side": m.origin_side,
            "applied_by_sync": m.applied_by_sync}


def _field(source: dict[str, Any], name: str, kind: type, raw: str) -> Any:
    value = source.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EnvelopeError(f"source.{name} is {value!r}, expected {kind.__name__}: {raw[:200]!r}")
    return value


def _image(value: dict[str, Any], which: str, raw: str) -> dict[str, Any]:
    image = value.get(which)
    if not isinstance(image, dict):
        hint = " (is the table REPLICA IDENTITY FULL?)" if which == "before" else ""
        raise EnvelopeError(f"op {value.get('op')!r} without a '{which}' image{hint}: {raw[:200]!r}")
    return image


def _need(image: dict[str, Any], name: str, raw: str) -> Any:
    if image.get(name) is None:
        raise EnvelopeError(f"row image lacks '{name}': {raw[:200]!r}")
    return image[name]
