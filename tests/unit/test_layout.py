"""The hourly job's names for incoming files (taxi.layout.incoming_name): distinct inputs never
share an object, and every key derived from a valid input key is a valid S3 key."""

from __future__ import annotations

import hashlib

from taxi.layout import (
    MAX_KEY_BYTES,
    claim_key,
    done_record_key,
    done_record_name,
    failure_count_key,
    incoming_name,
    monitoring_record_key,
    predictions_key,
    set_aside_key,
)

VERSION = "20260101T000000Z-abcdef"
SET_ASIDE_ID = "20260101T000000Z-123456"  # taxi.failed_files.new_set_aside_id's form
PART_LIMIT = 255  # SeaweedFS refuses a longer `/`-separated part


def long_key(total: int, char: str = "a", last: str = ".csv") -> str:
    """A valid key of exactly `total` bytes under incoming/ made of `char`: folders of about 200
    bytes and a file name of at most 250 (padded with ASCII to the exact length)."""
    width = len(char.encode())
    key = "incoming/"
    while total - len(key.encode()) - len(last) > 250:
        key += char * (200 // width) + "/"
    room = total - len(key.encode()) - len(last)
    return key + char * (room // width) + "f" * (room % width) + last


def derived_keys(input_key: str) -> list[str]:
    prediction = predictions_key("s3://b/" + input_key, VERSION, incoming_name(input_key))
    return [
        claim_key(input_key),
        done_record_key(input_key),
        failure_count_key(input_key),
        set_aside_key(input_key, SET_ASIDE_ID),
        prediction,
        monitoring_record_key(prediction),
    ]


def valid(key: str) -> bool:
    return len(key.encode()) <= MAX_KEY_BYTES and all(
        len(part.encode()) <= PART_LIMIT for part in key.split("/")
    )


def test_names_keep_the_whole_key_suffix_included():
    assert incoming_name("incoming/2021-03/yellow.csv") == "incoming/2021-03/yellow.csv"
    names = {
        incoming_name(k)
        for k in ("incoming/x.csv", "incoming/x.parquet", "incoming/x.csv.gz", "incoming/x")
    }
    assert len(names) == 4
    assert predictions_key("s3://b/incoming/x.csv", VERSION, incoming_name("incoming/x.csv")) == (
        f"predictions/incoming/x.csv/{VERSION}.parquet"
    )
    assert done_record_key("incoming/x.parquet") == "processed/incoming/x.parquet.json"
    assert done_record_name(done_record_key("incoming/x.parquet")) == incoming_name(
        "incoming/x.parquet"
    )


def test_long_keys_get_short_distinct_names_and_valid_derived_keys():
    key = long_key(1020)
    assert len(key.encode()) == 1020 and valid(key)
    name = incoming_name(key)
    assert (
        name != key
        and name.startswith("incoming/")
        and name.endswith("~" + hashlib.sha256(key.encode()).hexdigest()[:32])
    )
    assert incoming_name(long_key(1020, "b")) != name  # same length and file name, other folders
    # failed/<id>/<key> would be 1,051 bytes
    assert set_aside_key(key, SET_ASIDE_ID) == f"failed/{SET_ASIDE_ID}/{name}"
    assert set_aside_key("incoming/x.csv", SET_ASIDE_ID) == f"failed/{SET_ASIDE_ID}/incoming/x.csv"
    assert done_record_name(done_record_key(key)) == name
    # Every key the hourly job derives from a valid input key is valid, at every length and
    # with multi-byte characters cut anywhere.
    for total in (200, 880, 899, 900, 901, 1000, 1017, 1018, 1024):
        for char in ("a", "é", "字"):
            key = long_key(total, char)
            assert valid(key) and len(key.encode()) == total
            assert all(valid(derived) for derived in derived_keys(key)), (total, char)
    file_name_too_long_for_a_record = "incoming/" + "z" * 253 + ".csv"[:2]  # last part 255 bytes
    assert all(valid(derived) for derived in derived_keys(file_name_too_long_for_a_record))


def test_a_key_kept_whole_never_equals_a_shortened_name():
    shortened = incoming_name(long_key(1020))
    # Someone uploads a file named exactly like another file's shortened name: it is shortened too.
    assert incoming_name(shortened) != shortened
    assert incoming_name(shortened) != incoming_name(long_key(1020))
