"""Random change events covering every kind of row value, for the specialised codec's tests."""

from __future__ import annotations

import random
import string

from streams.core.model import ChangeEvent

TEXT = string.ascii_letters + string.digits + " -_:\"\\'{}" + "山田太郎記名記録患者" + "\u00e9\U0001f600"


def random_text(rng: random.Random, longest: int = 40) -> str:
    """Up to ``longest`` characters, ASCII and not (quotes, backslashes, kanji, an emoji)."""
    return "".join(rng.choice(TEXT) for _ in range(rng.randint(0, longest)))


def random_value(rng: random.Random) -> object:
    """A row value of any kind the contract allows, edges included (64-bit limits, -0.0, inf, empty bytes)."""
    kind = rng.randrange(7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63),
                           rng.randint(-(2**63), 2**63 - 1)])
    if kind == 3:
        return rng.choice([0.0, -0.0, 1.5, -2.25e300, 3.141592653589793, float("inf"), rng.uniform(-1e9, 1e9)])
    if kind == 4:
        return random_text(rng)
    return rng.randbytes(rng.choice([0, 1, 127, 128, 1024, 5000]))


def random_image(rng: random.Random) -> dict[str, object] | None:
    """A row image of up to 14 columns, or None (a quarter of the time)."""
    if rng.random() < 0.25:
        return None
    return {random_text(rng, 12) or "id": random_value(rng) for _ in range(rng.randint(0, 14))}


def random_event(rng: random.Random) -> ChangeEvent:
    """A change event with random values in every field."""
    return ChangeEvent(
        event_id=random_text(rng), source_side=rng.choice(["local", "remote"]), source_store=random_text(rng, 15),
        table=random_text(rng, 15), op=rng.choice(["c", "u", "d", "r", "probe"]), key=random_text(rng),
        version=rng.choice([0, 1, 2**40, rng.randint(0, 2**63 - 1)]), row=random_image(rng),
        api_id=rng.choice([None, "PRV_DOC_006", random_text(rng)]), call_id=rng.choice([None, random_text(rng)]),
        origin_side=rng.choice(["local", "remote"]), lsn=rng.randint(0, 2**63 - 1), txid=rng.randint(0, 2**32),
        commit_ts_ms=rng.randint(0, 2**45), captured_ts_ms=rng.randint(0, 2**45), before=random_image(rng))
