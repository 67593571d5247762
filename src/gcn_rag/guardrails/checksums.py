"""The check digits that tell a real payment card or IBAN from any long number.

A circular is full of long numbers (trigger ids, GPS times, MJDs); a card number must pass
Luhn and carry an issuer prefix (IIN) with a length that issuer uses, an IBAN must have its
country's length and pass ISO 7064 mod 97-10. A number that fails is not personal data.
"""

from __future__ import annotations

#: (first digits, lengths) of the card schemes, from ISO/IEC 7812 issuer ranges.
_CARD_RANGES: tuple[tuple[range, int, frozenset[int]], ...] = (
    (range(4, 5), 1, frozenset({13, 16, 19})),  # Visa
    (range(51, 56), 2, frozenset({16})),  # Mastercard
    (range(2221, 2721), 4, frozenset({16})),  # Mastercard 2-series
    (range(34, 35), 2, frozenset({15})),  # American Express
    (range(37, 38), 2, frozenset({15})),
    (range(6011, 6012), 4, frozenset({16, 19})),  # Discover
    (range(644, 650), 3, frozenset({16, 19})),
    (range(65, 66), 2, frozenset({16, 19})),
    (range(3528, 3590), 4, frozenset({16, 17, 18, 19})),  # JCB
    (range(300, 306), 3, frozenset({14, 16})),  # Diners Club
    (range(36, 37), 2, frozenset({14, 16})),
    (range(38, 40), 2, frozenset({14, 16})),
    (range(62, 63), 2, frozenset({16, 17, 18, 19})),  # UnionPay
    (range(50, 51), 2, frozenset(range(12, 20))),  # Maestro
    (range(56, 59), 2, frozenset(range(12, 20))),
    (range(6759, 6760), 4, frozenset(range(12, 20))),
    (range(2200, 2205), 4, frozenset({16, 17, 18, 19})),  # Mir
)

#: IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_ok(digits: str) -> bool:
    """Whether ``digits`` is a payment card number: a known issuer prefix and length, and
    Luhn."""
    if not 12 <= len(digits) <= 19 or not digits.isdigit():
        return False
    issued = any(
        len(digits) in lengths and int(digits[:width]) in prefixes
        for prefixes, width, lengths in _CARD_RANGES
    )
    return issued and luhn_ok(digits)


def iban_ok(compact: str) -> bool:
    """Whether ``compact`` (no spaces, upper case) is an IBAN: its country's length and the
    mod 97 check (ISO 7064)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    if not compact[4:].isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """Whether the three parts of a US SSN can be issued (SSA rules: area not 000, 666 or
    900-999; group not 00; serial not 0000)."""
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )
