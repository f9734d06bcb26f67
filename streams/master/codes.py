"""The 10-digit medical institution code (医療機関コード) of the MHLW master (pure).

Layout, as printed on prescriptions and claims (保険医療機関コード):

- digits 1-2: the prefecture number (都道府県番号, 01 北海道 ... 47 沖縄県);
- digit 3: the fee schedule (点数表番号): 1 医科 (medical), 3 歯科 (dental), 4 薬局 (pharmacy);
- digits 4-10: the institution's code within its prefecture: the district (郡市区番号, 2 digits), the
  institution number (4 digits) and a check digit (検証番号).

The check digit is computed over the nine digits before it with the Luhn scheme (weights 2 and 1 from the
right, the digits of a two-digit product added), so it covers the prefecture and fee schedule too. A code is
stored as text, leading zero kept: as an integer, Hokkaido's ``01...`` loses a digit and anything above
prefecture 21 overflows a 32-bit ``INTEGER`` (the seed's column type).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.errors import PlatSyncError

#: Fee schedule digit -> its kind.
FEE_SCHEDULES: dict[str, str] = {"1": "medical", "3": "dental", "4": "pharmacy"}
PREFECTURES = range(1, 48)
LENGTH = 10


class InvalidCode(PlatSyncError, ValueError):
    """A medical institution code that is not valid; the message says why."""


@dataclass(frozen=True)
class InstitutionCode:
    """A valid code and its parts."""

    code: str

    @property
    def prefecture(self) -> int:
        """01..47."""
        return int(self.code[:2])

    @property
    def kind(self) -> str:
        """``medical``, ``dental`` or ``pharmacy``."""
        return FEE_SCHEDULES[self.code[2]]


def check_digit(first_nine: str) -> str:
    """The Luhn check digit of the first nine digits of a code."""
    total = 0
    for position, char in enumerate(reversed(first_nine)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str((10 - total % 10) % 10)


def parse_code(text: str) -> InstitutionCode:
    """A valid code from ``text`` (surrounding spaces ignored); :class:`InvalidCode` saying what is wrong."""
    code = text.strip()
    if len(code) != LENGTH or not code.isascii() or not code.isdigit():
        raise InvalidCode(f"expected {LENGTH} ASCII digits, got {text!r}")
    if int(code[:2]) not in PREFECTURES:
        raise InvalidCode(f"prefecture number {code[:2]} is not 01-47")
    if code[2] not in FEE_SCHEDULES:
        raise InvalidCode(f"fee schedule digit {code[2]} is not one of "
                          + ", ".join(f"{d} ({k})" for d, k in FEE_SCHEDULES.items()))
    expected = check_digit(code[:9])
    if code[9] != expected:
        raise InvalidCode(f"check digit {code[9]} is wrong (the Luhn digit of {code[:9]} is {expected})")
    return InstitutionCode(code)


def make_code(prefecture: int, fee_schedule: str, district: int, number: int) -> str:
    """A valid code from its parts (the synthetic master's generator uses it)."""
    if prefecture not in PREFECTURES or fee_schedule not in FEE_SCHEDULES \
            or not 0 <= district <= 99 or not 0 <= number <= 9999:
        raise ValueError(f"no code has the parts {prefecture}, {fee_schedule}, {district}, {number}")
    first_nine = f"{prefecture:02d}{fee_schedule}{district:02d}{number:04d}"
    return first_nine + check_digit(first_nine)
