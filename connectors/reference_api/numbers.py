"""Given patient and document numbers: accepted or refused inside the call, before anything is written.

The rules are :func:`connectors.stores.serials.claim_given_numbers`'s (the calling side's range,
not used by any record the node knows of); this module turns a refusal into the API's
:class:`PayloadError` naming the JSON path of the number (never the number).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from connectors.reference_api.errors import PayloadError
from connectors.stores.serials import Serial, claim_given_numbers
from streams.runtime.settings import Settings


def claim_or_refuse(conn: Connection, api: str, settings: Settings, side: str, serial: Serial,
                    given: Sequence[tuple[str, str]]) -> None:
    """Claim the numbers of ``given`` (``(JSON path, number)`` pairs) in the call's META transaction.

    Raises :class:`PayloadError` for the first refused number (the call then rolls back: nothing
    written); all accepted advances the side's sequence past them. The range is the side's
    configured one (:func:`connectors.stores.serials.side_range`).
    """
    problems = claim_given_numbers(conn, settings, side, serial, [number for _path, number in given])
    if problems:
        index = min(problems)
        extra = f" ({len(problems) - 1} more refused number(s) in this call)" if len(problems) > 1 else ""
        raise PayloadError(api, given[index][0], problems[index] + extra)
