"""Slurm's memory sizes and time values: parsing and formatting.

These follow the formats that ``sbatch`` accepts for ``--mem`` and ``--time``
and that ``squeue`` prints for times used and time limits.
"""

from __future__ import annotations

import re

_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[KMGT]?)B?$", re.IGNORECASE | re.ASCII)
_MEMORY_FACTORS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}

_TIME_FORMATS = (
    "minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes or days-hours:minutes:seconds"
)
_DAYS = re.compile(r"^(?P<days>[0-9]+)-(?P<rest>[0-9:]+)$", re.ASCII)


def parse_memory(value: str | int) -> int:
    """Parse a Slurm memory size into mebibytes.

    A bare number is in megabytes, as for ``sbatch --mem``. Suffixes K, M, G
    and T are powers of 1024. Kilobytes round up to whole mebibytes.

    >>> parse_memory("16G")
    16384
    >>> parse_memory("512M")
    512
    >>> parse_memory(2048)
    2048
    >>> parse_memory("1500K")
    2
    >>> parse_memory("16 GB")
    Traceback (most recent call last):
      ...
    ValueError: invalid memory size '16 GB': use a whole number with an optional unit K, M, G or T, such as 512M or 16G
    """
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    match = _MEMORY.match(text)
    if match is None:
        raise ValueError(
            f"invalid memory size {value!r}: use a whole number with an optional"
            " unit K, M, G or T, such as 512M or 16G"
        )
    factor = _MEMORY_FACTORS[(match["unit"] or "M").upper()]
    megabytes = int(match["number"]) * factor
    return int(megabytes) if megabytes == int(megabytes) else int(megabytes) + 1


def format_memory(megabytes: int) -> str:
    """Format mebibytes the way ``sbatch --mem`` accepts them.

    >>> format_memory(16384)
    '16G'
    >>> format_memory(1500)
    '1500M'
    """
    if megabytes and megabytes % 1024 == 0:
        return f"{megabytes // 1024}G"
    return f"{megabytes}M"


def parse_walltime(value: str | int) -> int | None:
    """Parse a Slurm time value into seconds; ``None`` means no limit.

    Accepts every format of ``sbatch --time`` and of squeue's time columns.
    A bare number is minutes. ``UNLIMITED``, ``INFINITE`` and ``NOT_SET``
    return ``None``.

    >>> parse_walltime("30")
    1800
    >>> parse_walltime("1:30:00")
    5400
    >>> parse_walltime("1-00:00:00")
    86400
    >>> parse_walltime("2-12")
    216000
    >>> parse_walltime("0:45")
    45
    >>> parse_walltime("UNLIMITED") is None
    True
    >>> parse_walltime("90 minutes")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
      ...
    ValueError: invalid time '90 minutes': use minutes, minutes:seconds, ... or days-hours:minutes:seconds
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"invalid time {value!r}: a time cannot be negative")
        return value * 60
    text = str(value).strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NOT_SET"):
        return None
    error = ValueError(f"invalid time {value!r}: use {_TIME_FORMATS}")
    days = 0
    match = _DAYS.match(text)
    if match:
        days = int(match["days"])
        parts = match["rest"].split(":")
        if len(parts) > 3 or not all(part.isascii() and part.isdigit() for part in parts):
            raise error
        # After a day count, the fields are hours[:minutes[:seconds]].
        hours, minutes, seconds = (list(map(int, parts)) + [0, 0])[:3]
    else:
        parts = text.split(":")
        if len(parts) > 3 or not all(part.isascii() and part.isdigit() for part in parts):
            raise error
        numbers = list(map(int, parts))
        if len(numbers) == 1:
            hours, minutes, seconds = 0, numbers[0], 0
        elif len(numbers) == 2:
            hours, minutes, seconds = 0, numbers[0], numbers[1]
        else:
            hours, minutes, seconds = numbers
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_walltime(seconds: int) -> str:
    """Format seconds as ``[days-]hours:minutes:seconds``.

    >>> format_walltime(5400)
    '1:30:00'
    >>> format_walltime(90061)
    '1-01:01:01'
    """
    days, remainder = divmod(int(seconds), 86400)
    hours, remainder = divmod(remainder, 3600)
    minutes, secs = divmod(remainder, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"
