import pytest

from slurmgate.slurm.units import format_memory, format_walltime, parse_memory, parse_walltime


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [("16G", 16384), ("16g", 16384), ("512M", 512), ("512", 512), ("1T", 1048576), ("2048K", 2), ("1K", 1), ("4GB", 4096)],
)
def test_parse_memory_units(text, megabytes):
    assert parse_memory(text) == megabytes


@pytest.mark.parametrize("text", ["", "16 GB", "-1G", "1.5G", "G", "16X", "sixteen"])
def test_parse_memory_rejects(text):
    with pytest.raises(ValueError, match="invalid memory size"):
        parse_memory(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("0:45", 45),
        ("1:30:00", 5400),
        ("1-00:00:00", 86400),
        ("2-12", 216000),
        ("1-02:30", 95400),
        ("00:01", 1),
    ],
)
def test_parse_walltime_formats(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text", ["UNLIMITED", "INFINITE", "NOT_SET"])
def test_parse_walltime_unlimited(text):
    assert parse_walltime(text) is None


@pytest.mark.parametrize("text", ["90 minutes", "1:2:3:4", "a:b", "-5", "1-", "1.5", ""])
def test_parse_walltime_rejects(text):
    with pytest.raises(ValueError, match="invalid time"):
        parse_walltime(text)


def test_format_round_trip():
    for seconds in (60, 5400, 86400, 90061):
        assert parse_walltime(format_walltime(seconds)) == seconds
    for megabytes in (512, 1024, 1500, 16384):
        assert parse_memory(format_memory(megabytes)) == megabytes
