"""Which folders ingestion may copy TLC months from (taxi.ingest.check_base_url, month_source)."""

from __future__ import annotations

import pytest

from taxi.ingest import check_base_url, month_source

REFUSED = (
    "TAXI_TLC_BASE_URL must be an https:// URL with a host or a local directory "
    "(a mirror over plain http:// is refused)"
)


def test_https_urls_and_local_directories_are_sources():
    tlc = "https://d37ci6vzurychx.cloudfront.net/trip-data"
    assert month_source(tlc, "green", (2021, 1)) == f"{tlc}/green_tripdata_2021-01.parquet"
    mirror = "https://mirror.example:8443/tlc/"
    assert check_base_url(mirror) == mirror
    assert month_source(mirror, "yellow", (2024, 12)).endswith(
        "/tlc/yellow_tripdata_2024-12.parquet"
    )
    assert month_source("/srv/tlc", "green", (2021, 3)) == "/srv/tlc/green_tripdata_2021-03.parquet"
    assert check_base_url("data") == "data"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://mirror.example/trip-data",
        "http://user:mirror-secret@10.0.0.5/trip-data",
        "HTTP://mirror.example/trip-data",
        "http:mirror.example/trip-data",
        "https:///trip-data",
        "ftp://mirror.example/trip-data",
        "file:///srv/tlc",
        "s3://taxi/tlc",
    ],
)
def test_other_sources_are_refused_naming_the_variable_not_the_value(base_url):
    for refuse in (check_base_url, lambda url: month_source(url, "green", (2021, 1))):
        with pytest.raises(ValueError) as raised:
            refuse(base_url)
        assert str(raised.value) == REFUSED
