"""The API matrix as a validated, immutable model loaded from ``matrix.toml``.

:func:`load_matrix` reads the TOML file, checks every rule and either returns a :class:`Matrix`
or raises one :class:`MatrixError` listing *all* faults found, one :class:`MatrixFault` each,
so an operator fixes the file in one pass instead of one fault per run.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from streams.core.errors import FileFault, FileFaultsError
from streams.core.model import ROUTES, SIDE_STORES, STORES

API_ID_PATTERN = r"^(PRV|PLAT)_[A-Z]{3}_\d{3}$"
#: The seed's APIs (seed 000) start with this; the others (``PLAT_``) are the engine's own routes, such as the
#: MHLW master's (docs/master.md), rendered apart from the seed's tables.
SEED_API_PREFIX = "PRV_"
TOP_LEVEL_KEYS: tuple[str, ...] = ("feeds", "apis", *ROUTES)
API_INFO_KEYS: tuple[str, ...] = ("category", "label")
ROUTE_KEYS: tuple[str, ...] = ("source", "target")

_API_ID_RE = re.compile(API_ID_PATTERN)
_TOML_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def default_matrix_path() -> Path:
    """The packaged ``matrix.toml`` next to this module."""
    return Path(__file__).resolve().with_name("matrix.toml")


#: One problem in a matrix file: the file, the dotted key path inside it, and what is wrong.
MatrixFault = FileFault


class MatrixError(FileFaultsError):
    """A matrix file is invalid; ``faults`` lists every problem found (top-level, feeds, apis, directions)."""


@dataclass(frozen=True)
class ApiRoute:
    """What one API writes on its source side and what the sync must write on the other side."""

    api_id: str
    label: str
    category: str
    source: tuple[str, ...]
    target: tuple[str, ...]

    @property
    def from_seed(self) -> bool:
        """Whether the API is one of the seed's (not an engine route of PLAT Sync's own)."""
        return self.api_id.startswith(SEED_API_PREFIX)


@dataclass(frozen=True)
class Direction:
    """One route (``local_to_remote`` or ``remote_to_local``) with its APIs in matrix order."""

    name: str
    source_side: str
    target_side: str
    routes: tuple[ApiRoute, ...]

    @property
    def api_ids(self) -> tuple[str, ...]:
        """The API ids of this direction, in matrix order."""
        return tuple(r.api_id for r in self.routes)

    def get(self, api_id: str | None) -> ApiRoute | None:
        """The route of ``api_id``, or ``None`` when this direction does not list it."""
        return self._by_api_id.get(api_id)

    @cached_property
    def _by_api_id(self) -> dict[str | None, ApiRoute]:
        # Looked up for every change the worker routes: a scan of the matrix cost 5% of its CPU.
        by_id: dict[str | None, ApiRoute] = {}
        for r in self.routes:
            by_id.setdefault(r.api_id, r)  # the first wins, as the scan did
        return by_id


@dataclass(frozen=True)
class Matrix:
    """The whole validated matrix: store feeds and both directions."""

    feeds: tuple[tuple[str, str], ...]  # (target store, source store whose changes feed it)
    directions: tuple[Direction, ...]  # in ROUTES order
    path: str = field(default="", compare=False)

    def direction(self, name: str) -> Direction:
        """The direction called ``name``; ``KeyError`` if there is none."""
        for d in self.directions:
            if d.name == name:
                return d
        raise KeyError(name)

    def direction_for_source(self, side: str) -> Direction:
        """The direction carrying changes captured on ``side``; ``KeyError`` for an unknown side."""
        for d in self.directions:
            if d.source_side == side:
                return d
        raise KeyError(side)

    def feed_source(self, target_store: str) -> str:
        """The source store whose changes are written into ``target_store``."""
        return dict(self.feeds)[target_store]

    def targets_fed_by(self, source_store: str, targets: Sequence[str]) -> tuple[str, ...]:
        """The stores among ``targets`` fed by ``source_store``, sorted by name."""
        feeds = dict(self.feeds)
        return tuple(sorted(t for t in targets if feeds.get(t) == source_store))


def load_matrix(path: Path | None = None) -> Matrix:
    """Load and validate a matrix file (default: the packaged ``matrix.toml``).

    Raises :class:`MatrixError` carrying every fault when the file is unreadable or invalid.
    """
    path = default_matrix_path() if path is None else path
    file = str(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise MatrixError([MatrixFault(file, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise MatrixError([MatrixFault(file, "", f"not UTF-8 text: {exc.reason}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION_RE.search(message)
        where = f"line {match.group(1)}" if match else ""
        raise MatrixError([MatrixFault(file, where, f"invalid TOML: {message}")]) from exc
    return _Validator(file).build(data)


def _names(values: Sequence[str]) -> str:
    return ", ".join(values)


class _Validator:
    """Walks the parsed TOML, collecting faults; builds the Matrix only when there are none."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.faults: list[MatrixFault] = []

    def fault(self, path: str, message: str) -> None:
        self.faults.append(MatrixFault(self.file, path, message))

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any] | None:
        value = data.get(key)
        if not isinstance(value, dict):
            self.fault(
                key, "missing required table" if key not in data else f"expected a table, got {type(value).__name__}"
            )
            return None
        return value

    def build(self, data: dict[str, Any]) -> Matrix:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.fault(key, f"unknown top-level key; expected one of {_names(TOP_LEVEL_KEYS)}")
        feeds = self.check_feeds(self.table(data, "feeds"))
        infos = self.check_apis(self.table(data, "apis"))
        tables = {name: self.table(data, name) for name in ROUTES}
        routes = {name: self.check_direction(name, t, feeds) for name, t in tables.items() if t is not None}
        self.check_api_sets(infos, tables)
        if self.faults:
            raise MatrixError(self.faults)
        assert infos is not None and feeds is not None  # no faults: both tables were valid
        directions = tuple(
            Direction(
                name=name,
                source_side=src,
                target_side=dst,
                routes=tuple(ApiRoute(api_id, *infos[api_id], *routes[name][api_id]) for api_id in infos),
            )
            for name, (src, dst) in ROUTES.items()
        )
        return Matrix(feeds=tuple((t, feeds[t]) for t in STORES), directions=directions, path=self.file)

    def check_feeds(self, table: dict[str, Any] | None) -> dict[str, str] | None:
        """Every store must be fed by exactly one known store."""
        if table is None:
            return None
        feeds: dict[str, str] = {}
        for key, value in table.items():
            if key not in STORES:
                self.fault(f"feeds.{key}", f"unknown target store; expected one of {_names(STORES)}")
            elif not isinstance(value, str) or value not in STORES:
                self.fault(f"feeds.{key}", f"expected one of {_names(STORES)}, got {value!r}")
            else:
                feeds[key] = value
        for store in STORES:
            if store not in table:
                self.fault("feeds", f"missing feed for store {store!r}")
        return feeds

    def api_id_ok(self, path: str, api_id: str) -> bool:
        ok = _API_ID_RE.match(api_id) is not None
        if not ok:
            self.fault(path, f"API id must match {API_ID_PATTERN}, got {api_id!r}")
        return ok

    def extra_keys(self, path: str, entry: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in entry:
            if key not in allowed:
                self.fault(f"{path}.{key}", f"unknown key; expected one of {_names(allowed)}")

    def check_apis(self, table: dict[str, Any] | None) -> dict[str, tuple[str, str]] | None:
        """Each API needs a non-empty ``label`` (starting with its id) and ``category``."""
        if table is None:
            return None
        infos: dict[str, tuple[str, str]] = {}
        for api_id, entry in table.items():
            path = f"apis.{api_id}"
            if not self.api_id_ok(path, api_id):
                continue
            infos[api_id] = ("", "")  # listed; the real values are kept only if they are valid
            if not isinstance(entry, dict):
                self.fault(path, f"expected a table with {_names(API_INFO_KEYS)}, got {type(entry).__name__}")
                continue
            self.extra_keys(path, entry, API_INFO_KEYS)
            values = []
            for key in ("label", "category"):
                value = entry.get(key)
                if key not in entry:
                    self.fault(path, f"missing {key!r}")
                elif not isinstance(value, str) or not value.strip():
                    self.fault(f"{path}.{key}", f"expected a non-empty string, got {value!r}")
                values.append(value)
            label, category = values
            if isinstance(label, str) and label.strip() and not label.startswith(api_id):
                self.fault(f"{path}.label", f"label must start with the API id {api_id!r}, got {label!r}")
            infos[api_id] = (label, category)
        return infos

    def check_direction(
        self, name: str, table: dict[str, Any], feeds: dict[str, str] | None
    ) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Check every API entry of one direction; return its (source, target) lists."""
        source_side, target_side = ROUTES[name]
        routes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for api_id, entry in table.items():
            path = f"{name}.{api_id}"
            if not self.api_id_ok(path, api_id):
                continue
            if not isinstance(entry, dict):
                self.fault(path, f"expected a table with source and target, got {type(entry).__name__}")
                continue
            self.extra_keys(path, entry, ROUTE_KEYS)
            source = self.check_stores(f"{path}.source", entry, "source", source_side)
            target = self.check_stores(f"{path}.target", entry, "target", target_side)
            if source is not None and not source and "source" in entry and target:
                # Both empty: the API does not exist on this side (a one-way route, such as the master's).
                self.fault(f"{path}.source", "must list at least one store the API writes "
                           "(an API that does not exist on this side lists none in source and target)")
            if source and target is not None and feeds is not None:
                for index, store in enumerate(target):
                    fed_by = feeds.get(store)
                    if fed_by is not None and fed_by not in source:
                        self.fault(
                            f"{path}.target[{index}]",
                            f"{store!r} is fed by {fed_by!r} changes (see [feeds]), but {api_id} "
                            f"does not list {fed_by!r} in its source on the {source_side} side",
                        )
            routes[api_id] = (source or (), target or ())
        return routes

    def check_stores(self, path: str, entry: dict[str, Any], key: str, side: str) -> tuple[str, ...] | None:
        """A list of distinct known store names existing on ``side``; ``None`` if unusable."""
        if key not in entry:
            self.fault(path.rsplit(".", 1)[0], f"missing {key!r} list")
            return None
        values = entry[key]
        if not isinstance(values, list):
            self.fault(path, f"expected a list of store names, got {type(values).__name__} {values!r}")
            return None
        stores: list[str] = []
        ok = True
        for index, store in enumerate(values):
            item = f"{path}[{index}]"
            if not isinstance(store, str) or store not in STORES:
                self.fault(item, f"expected one of {_names(STORES)}, got {store!r}")
                ok = False
            elif store in stores:
                first = f"{key}[{values.index(store)}]"
                self.fault(item, f"duplicate store {store!r} (already listed at {first})")
                ok = False
            elif store not in SIDE_STORES[side]:
                self.fault(
                    item,
                    f"store {store!r} does not exist on the {side} side (stores there: {_names(SIDE_STORES[side])})",
                )
                ok = False
                stores.append(store)
            else:
                stores.append(store)
        return tuple(stores) if ok else None

    def check_api_sets(
        self, infos: dict[str, tuple[str, str]] | None, tables: dict[str, dict[str, Any] | None]
    ) -> None:
        """Both directions list the same APIs, and every API has an entry in ``[apis]``."""
        ids = {name: [k for k in t if _API_ID_RE.match(k)] for name, t in tables.items() if t is not None}
        if len(ids) == len(ROUTES):
            for name, other in zip(ROUTES, reversed(list(ROUTES)), strict=True):
                for api_id in ids[other]:
                    if api_id not in ids[name]:
                        self.fault(
                            name,
                            f"missing {api_id}, which {other} lists (both directions must list the same APIs)",
                        )
        if infos is None:
            return
        listed = list(dict.fromkeys(api_id for values in ids.values() for api_id in values))
        for api_id in listed:
            if api_id not in infos:
                where = [name for name, values in ids.items() if api_id in values]
                self.fault("apis", f"missing {api_id}, which {' and '.join(where)} list{'s' * (len(where) == 1)}")
        for api_id in infos:
            if api_id not in listed:
                self.fault(f"apis.{api_id}", f"not listed in {_names(list(ROUTES))}")
