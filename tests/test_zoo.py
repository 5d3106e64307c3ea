"""The model zoo end to end: pack + publish a real ONNX model, serve it over real HTTP on
127.0.0.1, then list / pull / load / predict, and every way a download or an index can go wrong."""
from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from posezoo.runtime import PoseModel
from posezoo.zoo import (IntegrityError, NotCachedError, ZooError, load_index, make_server, pack,
                         publish, resolve_model)
from posezoo.runtime.cli import main as zoo_main
from posezoo.zoo.names import parse_ref, version_key
from posezoo.zoo.serve import ZooRequestHandler, parse_range
from posezoo.zoo.sources import split_sources

from onnx_models import make_pose_onnx, make_spec, paint_dots

NAME = "tiny-mouse"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def zoo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private POSEZOO_HOME, no configured sources, and no proxy for 127.0.0.1."""
    home = tmp_path / "home"
    monkeypatch.setenv("POSEZOO_HOME", str(home))
    for var in ("POSEZOO_ZOO", "POSEZOO_OFFLINE", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("POSEZOO_TIMEOUT", "10")
    return home


def make_entry(tmp_path: Path, version: str = "1.0.0", name: str = NAME) -> Path:
    model = make_pose_onnx(tmp_path / f"export-{version}.onnx",
                           make_spec(provenance={"backend": "test", "dataset": "openfield-like",
                                                 "test_metrics": {"rmse": 2.5}, "parity": {"max_abs_px": 0.0}}))
    return pack(model, tmp_path / f"entry-{name}-{version}", name=name, version=version,
                description="A tiny brightest-pixel model.", license="CC0-1.0", measure_speed=False)


@pytest.fixture
def zoo_dir(tmp_path: Path) -> Path:
    zoo = tmp_path / "zoo"
    publish(make_entry(tmp_path), zoo)
    return zoo


class Recorder(ZooRequestHandler):
    """Serves normally and records (path, Range header) of every GET."""

    requests: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Range")))
        super().do_GET()


class CutOnce(Recorder):
    """The first GET of an .onnx file sends half the body, then drops the connection."""

    cut_done = False

    def do_GET(self) -> None:
        if self.path.endswith(".onnx") and not type(self).cut_done:
            type(self).cut_done = True
            type(self).requests.append((self.path, self.headers.get("Range")))
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class IgnoresRange(Recorder):
    """A server that always answers 200 with the whole file."""

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Range")))
        del self.headers["Range"]
        ZooRequestHandler.do_GET(self)


class Redirects(Recorder):
    """Moved zoo: /old/... answers 301 to the same path at the root."""

    def do_GET(self) -> None:
        if self.path.startswith("/old/"):
            self.send_response(301)
            self.send_header("Location", self.path[len("/old"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


def start_server(zoo: Path, handler: type[ZooRequestHandler]) -> Iterator[str]:
    handler.requests = []
    server = make_server(zoo, "127.0.0.1", 0, handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def served(zoo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for url in start_server(zoo_dir, Recorder):
        monkeypatch.setenv("POSEZOO_ZOO", url)
        yield url


def model_requests(handler: type[Recorder]) -> list[tuple[str, str | None]]:
    return [r for r in handler.requests if r[0].endswith(".onnx")]


# -- the happy path ----------------------------------------------------------------------------
def test_pack_writes_entry_with_card(tmp_path: Path) -> None:
    entry_dir = make_entry(tmp_path)
    entry = json.loads((entry_dir / "entry.json").read_text())
    assert entry["name"] == NAME and entry["version"] == "1.0.0"
    assert entry["keypoints"] == ["red", "green", "blue"]
    assert entry["skeleton"] == [["red", "green"]]
    assert entry["metrics"] == {"test": {"rmse": 2.5}}
    assert entry["training_data"] == "openfield-like"
    files = {f["name"]: f for f in entry["files"]}
    assert set(files) == {f"{NAME}.onnx", "README.md"}
    for name, record in files.items():
        assert record["sha256"] == sha256(entry_dir / name)
        assert record["size"] == (entry_dir / name).stat().st_size
    card = (entry_dir / "README.md").read_text()
    for text in ("# tiny-mouse 1.0.0", "1. red", "- red - green", "test.rmse | 2.5", "openfield-like",
                 "max_abs_px", "CC0-1.0", 'PoseModel.load("zoo:tiny-mouse@1.0.0")'):
        assert text in card, text


def test_pack_accepts_a_directory_with_one_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    make_pose_onnx(run / "exported.onnx")
    out = pack(run, tmp_path / "entry")
    assert json.loads((out / "entry.json").read_text())["name"] == "brightest-pixel"
    make_pose_onnx(run / "second.onnx")
    with pytest.raises(ZooError, match="exactly one .onnx"):
        pack(run, tmp_path / "entry2")
    with pytest.raises(ZooError, match="not empty"):
        pack(run / "second.onnx", tmp_path / "entry")


def test_list_pull_load_predict(served: str, capsys: pytest.CaptureFixture[str], zoo_env: Path) -> None:
    assert zoo_main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(NAME))
    assert row.split()[:3] == [NAME, "1.0.0", "3"] and row.split()[-1] == "no"

    path = resolve_model(f"zoo:{NAME}", quiet=True)
    assert path == zoo_env / "models" / NAME / "1.0.0" / f"{NAME}.onnx"
    published = served  # the file on the server and the cached copy are byte-identical
    assert sha256(path) == json.loads(urllib.request.urlopen(published + "index.json").read())[
        "entries"][0]["files"][0]["sha256"]
    assert (path.parent / "README.md").is_file() and (path.parent / "entry.json").is_file()

    model = PoseModel.load(f"zoo:{NAME}@1.0.0", device="cpu")
    frame = paint_dots(np.zeros((48, 64, 3), np.uint8), {"red": (5, 7), "green": (40, 30), "blue": (60, 2)})
    keypoints = model(frame).coords[0, 0]
    np.testing.assert_allclose(keypoints[:, :2], [[5, 7], [40, 30], [60, 2]])
    np.testing.assert_allclose(keypoints[:, 2], 1.0)

    assert zoo_main(["zoo", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    # The served entry, and the model shipped inside the package (the built-in index).
    assert sorted((e["name"], e["version"], e["cached"]) for e in listed) == [
        ("synthetic-mouse", "1.0.0", False), (NAME, "1.0.0", True)]


def test_cached_pinned_version_needs_no_network(served: str) -> None:
    first = resolve_model(f"zoo:{NAME}@1.0.0", quiet=True)
    count = len(Recorder.requests)
    assert resolve_model(f"zoo:{NAME}@1.0.0", quiet=True) == first
    assert len(Recorder.requests) == count


def test_latest_version_is_highest(tmp_path: Path, zoo_dir: Path, served: str) -> None:
    for version in ("1.10.0", "1.9.0", "1.10.0rc1"):
        publish(make_entry(tmp_path, version), zoo_dir)
    assert resolve_model(f"zoo:{NAME}", quiet=True).parent.name == "1.10.0"
    assert resolve_model(f"zoo:{NAME}@1.9.0", quiet=True).parent.name == "1.9.0"
    with pytest.raises(ZooError, match=r"available versions: 1.0.0, 1.9.0, 1.10.0rc1, 1.10.0"):
        resolve_model(f"zoo:{NAME}@2.0.0")


def test_version_order() -> None:
    ordered = ["0.9", "1.0rc1", "1.0", "1.0.1", "1.2", "1.10", "2024.1"]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_info_prints_the_card(served: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo_main(["zoo", "info", NAME]) == 0
    out = capsys.readouterr().out
    assert "# tiny-mouse 1.0.0" in out and "3. blue" in out and "Not cached" in out
    resolve_model(f"zoo:{NAME}", quiet=True)
    assert zoo_main(["zoo", "info", f"{NAME}@1.0.0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cached"] is True and info["keypoints"] == ["red", "green", "blue"]
    assert zoo_main(["zoo", "info", "no-such-model"]) == 2
    assert "no-such-model is not in any zoo source" in capsys.readouterr().err


def test_pull_command_prints_path(served: str, capsys: pytest.CaptureFixture[str], zoo_env: Path) -> None:
    assert zoo_main(["zoo", "pull", NAME, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(zoo_env / "models" / NAME / "1.0.0" / f"{NAME}.onnx")


# -- integrity and resumption ------------------------------------------------------------------
def test_tampered_file_is_rejected_and_deleted(zoo_dir: Path, served: str, zoo_env: Path) -> None:
    served_model = zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx"
    expected = sha256(served_model)
    data = bytearray(served_model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    served_model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        resolve_model(f"zoo:{NAME}", quiet=True)
    message = str(err.value)
    assert f"{NAME}@1.0.0" in message and expected in message and sha256(served_model) in message
    version_dir = zoo_env / "models" / NAME / "1.0.0"
    assert not (version_dir / f"{NAME}.onnx").exists()
    assert not (version_dir / f"{NAME}.onnx.part").exists()
    assert not (version_dir / "entry.json").exists()


def test_cut_transfer_resumes_with_range(zoo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    CutOnce.cut_done = False
    for url in start_server(zoo_dir, CutOnce):
        monkeypatch.setenv("POSEZOO_ZOO", url)
        path = resolve_model(f"zoo:{NAME}", quiet=True)
    served_model = zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx"
    half = served_model.stat().st_size // 2
    assert model_requests(CutOnce) == [(f"/models/{NAME}/1.0.0/{NAME}.onnx", None),
                                       (f"/models/{NAME}/1.0.0/{NAME}.onnx", f"bytes={half}-")]
    assert sha256(path) == sha256(served_model)
    assert not path.with_name(path.name + ".part").exists()


def test_partial_file_from_an_earlier_run_is_resumed(zoo_dir: Path, served: str, zoo_env: Path) -> None:
    served_model = zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx"
    part = zoo_env / "models" / NAME / "1.0.0" / f"{NAME}.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(served_model.read_bytes()[:300])
    path = resolve_model(f"zoo:{NAME}", quiet=True)
    assert model_requests(Recorder)[-1][1] == "bytes=300-"
    assert sha256(path) == sha256(served_model)


def test_server_ignoring_range_restarts_from_zero(zoo_dir: Path, zoo_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    served_model = zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx"
    part = zoo_env / "models" / NAME / "1.0.0" / f"{NAME}.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 300)  # wrong bytes: appending to them would fail the sha check
    for url in start_server(zoo_dir, IgnoresRange):
        monkeypatch.setenv("POSEZOO_ZOO", url)
        path = resolve_model(f"zoo:{NAME}", quiet=True)
    assert model_requests(IgnoresRange)[-1][1] == "bytes=300-"
    assert sha256(path) == sha256(served_model)


@pytest.mark.parametrize("delta, match", [(-10, "larger than the"), (10, "has only")])
def test_declared_size_is_enforced(zoo_dir: Path, served: str, zoo_env: Path, delta: int, match: str) -> None:
    index_path = zoo_dir / "index.json"
    index = json.loads(index_path.read_text())
    index["entries"][0]["files"][0]["size"] += delta
    index_path.write_text(json.dumps(index))
    with pytest.raises(IntegrityError, match=match):
        resolve_model(f"zoo:{NAME}", quiet=True)
    assert not list((zoo_env / "models" / NAME / "1.0.0").glob("*.onnx*"))
    assert len(model_requests(Recorder)) == 1  # a wrong size is not retried as a network failure


def test_range_requests_on_the_server(zoo_dir: Path, served: str) -> None:
    url = served + f"models/{NAME}/1.0.0/{NAME}.onnx"
    data = (zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx").read_bytes()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as resp:
        assert resp.status == 206 and resp.read() == data[10:20]
        assert resp.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"}))
    assert err.value.code == 416
    assert parse_range("bytes=-5", 100) == (95, 99)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=0-499", 100) == (0, 99)
    assert parse_range("bytes=1-2,5-6", 100) is None
    (zoo_dir / ".secret").write_text("x")
    for hidden in ("models/", ".secret", f"models/{NAME}/../.secret"):  # no listings, no dot files
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(served + hidden)
        assert err.value.code == 404


# -- offline -----------------------------------------------------------------------------------
def test_offline_serves_from_cache_and_fails_clearly(served: str, zoo_env: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = resolve_model(f"zoo:{NAME}", quiet=True)
    count = len(Recorder.requests)
    monkeypatch.setenv("POSEZOO_OFFLINE", "1")
    assert resolve_model(f"zoo:{NAME}") == path
    assert resolve_model(f"zoo:{NAME}@1.0.0") == path
    assert len(Recorder.requests) == count  # the server was never contacted
    with pytest.raises(NotCachedError) as err:
        resolve_model("zoo:other-model@2.0")
    assert str(err.value) == (
        f"zoo:other-model@2.0: model other-model@2.0 is not in the cache at {zoo_env / 'models'} and "
        "POSEZOO_OFFLINE is set; run "
        "`posezoo zoo pull other-model@2.0` on a machine with network, or copy the cache")
    with pytest.raises(NotCachedError, match=r"model other-model is not in the cache"):
        resolve_model("zoo:other-model")


def test_offline_local_index_with_remote_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = write_index(tmp_path / "mirror", [entry_dict(files=[
        {"name": "ok.onnx", "url": "https://example.org/ok.onnx", "sha256": "0" * 64, "size": 1}])])
    monkeypatch.setenv("POSEZOO_ZOO", str(local))
    monkeypatch.setenv("POSEZOO_OFFLINE", "1")
    with pytest.raises(NotCachedError, match="model ok is not in the cache"):
        resolve_model("zoo:ok")


def test_offline_cli_list_shows_cached(served: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    resolve_model(f"zoo:{NAME}", quiet=True)
    monkeypatch.setenv("POSEZOO_OFFLINE", "1")
    assert zoo_main(["zoo", "list"]) == 0
    captured = capsys.readouterr()
    assert re.search(rf"^{NAME}\s+1\.0\.0\s.*yes$", captured.out, re.M), captured.out
    assert "skipped (POSEZOO_OFFLINE is set)" in captured.err


def test_unreachable_source_falls_back_to_cache(served: str, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = resolve_model(f"zoo:{NAME}", quiet=True)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    monkeypatch.setenv("POSEZOO_ZOO", dead)
    with caplog.at_level("WARNING", logger="posezoo.zoo.resolve"):
        assert resolve_model(f"zoo:{NAME}") == path
    assert dead in caplog.text and f"using the cached version {NAME}@1.0.0" in caplog.text
    with pytest.raises(ZooError, match=r"(?s)model tiny-mouse@2\.0 is not in any zoo source.*Connection refused"):
        resolve_model(f"zoo:{NAME}@2.0")


def test_redirected_index_resolves_files_against_its_new_place(zoo_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for url in start_server(zoo_dir, Redirects):
        monkeypatch.setenv("POSEZOO_ZOO", url + "old/")
        path = resolve_model(f"zoo:{NAME}", quiet=True)
    assert sha256(path) == sha256(zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx")
    assert model_requests(Redirects) == [(f"/models/{NAME}/1.0.0/{NAME}.onnx", None)]


def test_local_directory_source(zoo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSEZOO_ZOO", zoo_dir.as_uri())
    path = resolve_model(f"zoo:{NAME}", quiet=True)
    assert sha256(path) == sha256(zoo_dir / "models" / NAME / "1.0.0" / f"{NAME}.onnx")


def test_config_file_sources(zoo_dir: Path, zoo_env: Path) -> None:
    zoo_env.mkdir(parents=True, exist_ok=True)
    (zoo_env / "config.yaml").write_text(f"zoo_sources:\n  - {zoo_dir}\n")
    assert resolve_model(f"zoo:{NAME}", quiet=True).is_file()


def test_split_sources_keeps_urls_whole() -> None:
    sep = os.pathsep
    assert split_sources(f"https://a.org:8443/zoo{sep}/data/zoo{sep}http://127.0.0.1:8000/") == [
        "https://a.org:8443/zoo", "/data/zoo", "http://127.0.0.1:8000/"]
    assert split_sources("http://a:8000/z, /x") == ["http://a:8000/z", "/x"]


# -- safety ------------------------------------------------------------------------------------
def write_index(directory: Path, entries: list[dict], schema_version: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").write_text(json.dumps({"schema_version": schema_version, "entries": entries}))
    return directory


def entry_dict(**overrides) -> dict:
    entry = {"name": "ok", "version": "1.0", "files": [
        {"name": "ok.onnx", "url": "ok.onnx", "sha256": "0" * 64, "size": 1}]}
    entry.update(overrides)
    return entry


@pytest.mark.parametrize("bad, match", [
    ({"name": "../evil"}, "invalid model name"),
    ({"name": "Evil"}, "invalid model name"),
    ({"version": "../../x"}, "invalid version"),
    ({"version": "1/2"}, "invalid version"),
    ({"files": [{"name": "../../evil.onnx", "url": "x.onnx", "sha256": "0" * 64, "size": 1}]}, "invalid file name"),
    ({"files": [{"name": "/etc/evil.onnx", "url": "x.onnx", "sha256": "0" * 64, "size": 1}]}, "invalid file name"),
    ({"files": [{"name": "entry.json", "url": "x", "sha256": "0" * 64, "size": 1}]}, "reserved"),
    ({"files": [{"name": "ok.onnx", "url": "../secret.onnx", "sha256": "0" * 64, "size": 1}]}, r"'\.\.'"),
    ({"files": [{"name": "ok.onnx", "url": "/etc/passwd", "sha256": "0" * 64, "size": 1}]}, "absolute path"),
    ({"files": [{"name": "ok.onnx", "url": "ftp://h/x", "sha256": "0" * 64, "size": 1}]}, "unsupported scheme"),
    ({"files": [{"name": "ok.onnx", "url": "ok.onnx", "sha256": "xyz", "size": 1}]}, "sha256"),
])
def test_unsafe_index_entries_are_refused(tmp_path: Path, zoo_env: Path, bad: dict, match: str) -> None:
    source = write_index(tmp_path / "evil", [entry_dict(**bad)])
    with pytest.raises(ZooError, match=match) as err:
        load_index(str(source))
    assert str(source / "index.json") in str(err.value)
    assert not zoo_env.exists() or not any(zoo_env.rglob("*"))


@pytest.mark.parametrize("ref", ["zoo:../x", "zoo:a/b", "zoo:x@../1", "zoo:x@", "zoo:", "zoo:x@1/2"])
def test_traversal_refs_are_refused(ref: str) -> None:
    with pytest.raises(ZooError):
        parse_ref(ref)


def test_remote_index_may_not_point_at_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = write_index(tmp_path / "remote", [entry_dict(files=[
        {"name": "ok.onnx", "url": "file:///etc/passwd", "sha256": "0" * 64, "size": 1}])])
    for url in start_server(zoo, Recorder):
        with pytest.raises(ZooError, match="remote index may not reference local file"):
            load_index(url)


def test_newer_index_schema_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    zoo = write_index(tmp_path / "future", [entry_dict(future_field=True)], schema_version=2)
    for url in start_server(zoo, Recorder):
        with pytest.raises(ZooError) as err:
            load_index(url)
        assert f"{url}index.json has schema_version 2" in str(err.value)
        assert "upgrade posezoo" in str(err.value)
        monkeypatch.setenv("POSEZOO_ZOO", url)
        with pytest.raises(ZooError, match="has schema_version 2"):
            resolve_model("zoo:ok")
        assert zoo_main(["zoo", "list"]) == 0
        assert "has schema_version 2" in capsys.readouterr().err


def test_newer_spec_schema_is_refused(tmp_path: Path, zoo_env: Path) -> None:
    source = write_index(tmp_path / "future-spec", [entry_dict(spec_schema_version="2.0")])
    with pytest.raises(ZooError, match=r"ok@1.0 .* uses spec schema 2.0, but this posezoo reads schema 1"):
        resolve_model("zoo:ok", sources=[str(source)])
    assert not (zoo_env / "models" / "ok" / "1.0" / "ok.onnx").exists()


def test_publish_refuses_duplicates_and_tampered_entries(tmp_path: Path, zoo_dir: Path) -> None:
    entry_dir = make_entry(tmp_path, name="other")
    publish(entry_dir, zoo_dir)
    with pytest.raises(ZooError, match="already published"):
        publish(entry_dir, zoo_dir)
    publish(entry_dir, zoo_dir, force=True)
    index = json.loads((zoo_dir / "index.json").read_text())
    assert [(e["name"], e["version"]) for e in index["entries"]] == [("other", "1.0.0"), (NAME, "1.0.0")]
    assert index["entries"][0]["files"][0]["url"] == "models/other/1.0.0/other.onnx"
    (entry_dir / "other.onnx").write_bytes(b"not the model")
    with pytest.raises(IntegrityError, match="other.onnx"):
        publish(entry_dir, zoo_dir, force=True)


@pytest.fixture
def https_zoo(zoo_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The zoo over HTTPS with a self-signed certificate made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    Recorder.requests = []
    server = make_server(zoo_dir, "127.0.0.1", 0, Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/", cert
    server.shutdown()
    server.server_close()


def test_https_trusts_the_ca_bundle_override(https_zoo: tuple[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = https_zoo
    monkeypatch.setenv("POSEZOO_ZOO", url)
    for var in ("POSEZOO_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ZooError, match="CERTIFICATE_VERIFY_FAILED.*POSEZOO_CA_BUNDLE"):
        resolve_model(f"zoo:{NAME}", quiet=True)
    monkeypatch.setenv("POSEZOO_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ZooError, match="POSEZOO_CA_BUNDLE=.*missing.pem"):
        resolve_model(f"zoo:{NAME}", quiet=True)
    monkeypatch.delenv("POSEZOO_CA_BUNDLE")
    (tmp_path / "junk.pem").write_text("not a certificate")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "junk.pem"))
    with pytest.raises(ZooError, match="REQUESTS_CA_BUNDLE=.*junk.pem.* is not a valid PEM CA bundle"):
        resolve_model(f"zoo:{NAME}", quiet=True)
    monkeypatch.setenv("POSEZOO_CA_BUNDLE", str(cert))  # takes precedence over the others
    path = resolve_model(f"zoo:{NAME}", quiet=True)
    assert sha256(path) == sha256(tmp_path / "zoo" / "models" / NAME / "1.0.0" / f"{NAME}.onnx")


def test_concurrent_pulls_download_once(served: str) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model(f"zoo:{NAME}", quiet=True)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and len(set(results)) == 1
    assert len(model_requests(Recorder)) == 1


def test_serve_command(zoo_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "posezoo.runtime.cli", "zoo", "serve", str(zoo_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        index = json.loads(urllib.request.urlopen(url + "index.json", timeout=10).read())
        assert [e["name"] for e in index["entries"]] == [NAME]
    finally:
        proc.terminate()
        proc.wait(10)


def test_builtin_index_is_valid() -> None:
    from posezoo.zoo.sources import BUILTIN_SOURCE

    assert isinstance(load_index(BUILTIN_SOURCE), list)


def test_zoo_imports_no_framework() -> None:
    code = ("import sys, posezoo.zoo, posezoo.runtime.cli.zoo; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
