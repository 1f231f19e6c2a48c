"""The stack's S3 users on a real SeaweedFS server started with the identities file the compose
override writes (deploy/seaweedfs/identities.py): the root user creates the bucket (as
deploy/s3_setup.py does), the flows' user reads, writes and lists that bucket only, the uploader
writes under incoming/ only."""

from __future__ import annotations

import importlib.util
import secrets

import pytest
from botocore.exceptions import ClientError

import devstack
from taxi.storage.errors import StorageError
from taxi.storage.objects import ObjectStore, s3_client
from tests.paths import ROOT

BUCKET = "taxi"
OTHER = "other-team"


def _identities_module():
    # A standalone script of the SeaweedFS image, not a package module.
    spec = importlib.util.spec_from_file_location(
        "identities", ROOT / "deploy" / "seaweedfs" / "identities.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stack_s3(tmp_path_factory):
    """SeaweedFS with the stack's three users; yields (endpoint, root, flows' and uploader's
    keys)."""
    identities = _identities_module()
    tmp = tmp_path_factory.mktemp("s3-users")
    root = ("root-" + secrets.token_hex(4), secrets.token_hex(20))
    flows = ("flows-" + secrets.token_hex(4), secrets.token_hex(20))
    uploader = ("uploader-" + secrets.token_hex(4), secrets.token_hex(20))
    config = tmp / "s3.json"
    identities.write_config(
        str(config), identities.identities(*root, *flows, bucket=BUCKET, uploader=uploader)
    )
    assert config.stat().st_mode & 0o777 == 0o600
    server = devstack.start_s3_server(tmp / "s3", *root, s3_config=config)
    try:
        yield server.url, root, flows, uploader
    finally:
        server.stop()


def _client(monkeypatch, endpoint: str, keys: tuple[str, str]):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    return s3_client(*keys)


def _code(call) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


def test_the_flows_user_reads_writes_and_lists_the_project_bucket_only(stack_s3, monkeypatch):
    from deploy import s3_setup

    endpoint, root_keys, flow_keys, _ = stack_s3
    # The setup step, as root: the project's bucket (twice: it is idempotent) ...
    monkeypatch.setenv("TAXI_S3_ROOT_USER", root_keys[0])
    monkeypatch.setenv("TAXI_S3_ROOT_PASSWORD", root_keys[1])
    monkeypatch.setenv("TAXI_BUCKET", BUCKET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    s3_setup.main()
    s3_setup.main()
    # ... and, for this test, another team's bucket with an object in it.
    root = _client(monkeypatch, endpoint, root_keys)
    root.create_bucket(Bucket=OTHER)
    root.put_object(Bucket=OTHER, Key="secret.csv", Body=b"a,b\n1,2\n")

    flows = _client(monkeypatch, endpoint, flow_keys)
    store = ObjectStore(bucket=BUCKET, client=flows)
    store.ensure_bucket()  # what the ingest flow and the seed call: the bucket exists, fine
    store.put_verified("data/x.parquet", b"trips")
    assert store.get("data/x.parquet") == b"trips"
    assert store.list_keys("data/") == ["data/x.parquet"]
    assert store.put_if_absent("claims/x.json", b"{}") and not store.put_if_absent(
        "claims/x.json", b"{}"
    )
    store.delete("data/x.parquet")
    assert not store.exists("data/x.parquet")

    # Another bucket: no read, write, list or delete; no new bucket; through the project's
    # own code too, whose error names the action and the object.
    assert _code(lambda: flows.get_object(Bucket=OTHER, Key="secret.csv")) == "AccessDenied"
    assert _code(lambda: flows.put_object(Bucket=OTHER, Key="x", Body=b"1")) == "AccessDenied"
    assert _code(lambda: flows.list_objects_v2(Bucket=OTHER)) == "AccessDenied"
    assert _code(lambda: flows.delete_object(Bucket=OTHER, Key="secret.csv")) == "AccessDenied"
    assert _code(lambda: flows.create_bucket(Bucket="flows-own-bucket")) == "AccessDenied"
    with pytest.raises(
        StorageError, match=r"cannot read s3://other-team/secret\.csv: .*AccessDenied"
    ):
        ObjectStore(bucket=OTHER, client=flows).get("secret.csv")
    assert root.get_object(Bucket=OTHER, Key="secret.csv")["Body"].read() == b"a,b\n1,2\n"
    assert [b["Name"] for b in root.list_buckets()["Buckets"]] == sorted([BUCKET, OTHER])


def test_the_uploader_writes_under_incoming_only(stack_s3, monkeypatch):
    endpoint, root_keys, flow_keys, uploader_keys = stack_s3
    root = _client(monkeypatch, endpoint, root_keys)
    if BUCKET not in [b["Name"] for b in root.list_buckets()["Buckets"]]:
        root.create_bucket(Bucket=BUCKET)
    for key in ("models/latest.json", "data/green/x.parquet", "incoming/earlier.parquet"):
        root.put_object(Bucket=BUCKET, Key=key, Body=b"kept")
    uploader = _client(monkeypatch, endpoint, uploader_keys)
    # A file for the hourly job, in one put or in parts (what `aws s3 cp` does past 8 MB) ...
    uploader.put_object(Bucket=BUCKET, Key="incoming/new.parquet", Body=b"trips")
    upload = uploader.create_multipart_upload(Bucket=BUCKET, Key="incoming/a/big.parquet")
    part = uploader.upload_part(
        Bucket=BUCKET,
        Key="incoming/a/big.parquet",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"big trips",
    )
    uploader.complete_multipart_upload(
        Bucket=BUCKET,
        Key="incoming/a/big.parquet",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    # ... which the flows read.
    flows = ObjectStore(bucket=BUCKET, client=_client(monkeypatch, endpoint, flow_keys))
    assert flows.get("incoming/new.parquet") == b"trips"
    assert flows.get("incoming/a/big.parquet") == b"big trips"

    # Nothing else: no write outside incoming/ (nor next to it), no read or list anywhere, no
    # copy of another object in, no other bucket.
    for key in (
        "models/latest.json",
        "data/green/y.parquet",
        "predictions/x",
        "failed/x",
        "incomingx",
    ):
        assert _code(lambda k=key: uploader.put_object(Bucket=BUCKET, Key=k, Body=b"1")) == (
            "AccessDenied"
        ), key
    for key in ("models/latest.json", "data/green/x.parquet", "incoming/earlier.parquet"):
        assert _code(lambda k=key: uploader.get_object(Bucket=BUCKET, Key=k)) == "AccessDenied"
    assert _code(lambda: uploader.delete_object(Bucket=BUCKET, Key="models/latest.json")) == (
        "AccessDenied"
    )
    for prefix in ("", "incoming/", "models/"):
        assert _code(lambda p=prefix: uploader.list_objects_v2(Bucket=BUCKET, Prefix=p)) == (
            "AccessDenied"
        ), prefix
    copy = {"Bucket": BUCKET, "Key": "models/latest.json"}
    assert _code(
        lambda: uploader.copy_object(Bucket=BUCKET, Key="incoming/c", CopySource=copy)
    ) == ("AccessDenied")
    assert _code(lambda: uploader.create_bucket(Bucket="uploads-elsewhere")) == "AccessDenied"
    assert root.get_object(Bucket=BUCKET, Key="models/latest.json")["Body"].read() == b"kept"


def test_the_flows_user_must_not_be_the_root_user():
    identities = _identities_module()
    with pytest.raises(ValueError, match="must differ from the root user"):
        identities.identities(
            "same", "secret-one-0123456789", "same", "secret-two-0123456789", bucket=BUCKET
        )


def test_the_uploader_must_be_a_user_of_its_own():
    identities = _identities_module()
    for user in ("root", "flows"):
        with pytest.raises(ValueError, match="the uploader .* must differ"):
            identities.identities(
                "root",
                "secret-one-0123456789",
                "flows",
                "secret-two-0123456789",
                bucket=BUCKET,
                uploader=(user, "secret-three-0123456789"),
            )
