"""The zoo as a web site: cards with sample frames and measured speed, a static site, served at
`/` beside the index over real HTTP on 127.0.0.1, and clicked through in real headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest

from posezoo.runtime import PoseModel
from posezoo.runtime.session import physical_cores
from posezoo.zoo import ZooEntry, ZooError, make_server, pack, publish
from posezoo.zoo.pages import fmt
from posezoo.zoo.sample import keypoint_array
from posezoo.zoo.site import build_site, read_zoo
from posezoo.zoo.speed import cpu_name

from browser import Browser, find_chromium
from onnx_models import make_pose_onnx, make_spec, paint_dots

REPO = Path(__file__).resolve().parents[1]
MOUSE = REPO / "zoo" / "models" / "synthetic-mouse" / "1.0.0" / "synthetic-mouse.onnx"
XSS = 'Brightest pixels. <script>window.pwned = 1</script> & "quoted" <b>not bold</b>'
MODELS = {"mouse-top", "mouse-bottom", "dots"}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from posezoo.training.synthetic import make_project

    project = make_project(tmp_path_factory.mktemp("project") / "p", n_frames=2, video_frames=1, seed=3)
    return sorted((project / "labeled-data" / "mouse1").glob("img*.png"))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, frames: list[Path]) -> Path:
    """Three models, four versions: the built-in mouse model packed under two names (one of them
    twice), and a tiny brightest-pixel model whose texts try to inject HTML."""
    root = tmp_path_factory.mktemp("zoo-site")
    zoo = root / "zoo"
    for name, version, view, frame in (("mouse-top", "1.0.0", "top", frames[0]),
                                       ("mouse-top", "1.1.0", "top", frames[1]),
                                       ("mouse-bottom", "2.0.0", "bottom", frames[0])):
        publish(pack(MOUSE, root / f"{name}-{version}", name=name, version=version, species="mouse",
                     view=view, sample_image=frame, license="MIT",
                     description=f"The synthetic mouse, {view} view."), zoo)
    dots = make_pose_onnx(root / "dots.onnx", make_spec(provenance={
        "backend": "test", "dataset": {"project": "<i>dots</i>"}, "test_metrics": {"rmse": 0.5}}))
    image = paint_dots(np.zeros((120, 160, 3), np.uint8), {"red": (20, 30), "green": (80, 60), "blue": (140, 100)})
    cv2.imwrite(str(root / "dots.png"), image)
    publish(pack(dots, root / "dots-entry", name="dots", version="0.1.0", species="dot <em>",
                 view="side", sample_image=root / "dots.png", license="CC0-1.0", description=XSS), zoo)
    return zoo


def entries(zoo: Path) -> dict[str, ZooEntry]:
    return {e.ref: e for e, _ in read_zoo(zoo)}


def lookup(data: Any, key: str) -> Any:
    """The value at a page figure's data-key (a dotted path; list items by position)."""
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


# -- packing: the card's new figures ---------------------------------------------------------------
def test_pack_records_sample_frame_and_cpu_speed(zoo: Path, frames: list[Path]) -> None:
    entry = entries(zoo)["mouse-top@1.1.0"]
    assert entry.species == "mouse" and entry.view == "top"
    files = {f.name: f for f in entry.files}
    assert set(files) == {"mouse-top.onnx", "sample.jpg", "README.md"}
    version_dir = zoo / "models" / "mouse-top" / "1.1.0"
    picture = cv2.imread(str(version_dir / "sample.jpg"))
    assert picture.shape == (240, 320, 3)

    sample = entry.sample
    assert sample["file"] == "sample.jpg" and sample["source"] == frames[1].name
    assert sample["image_size"] == [240, 320] and sample["individuals"] == 1
    model = PoseModel.load(version_dir / "mouse-top.onnx", device="cpu")
    expected = keypoint_array(model.predict([cv2.imread(str(frames[1]))]))[0]
    assert np.allclose(np.array(sample["keypoints"], float), expected, atol=0.01)

    speed = entry.speed
    assert speed["frames_per_second"] > 0 and speed["ms_per_frame_median"] > 0
    assert speed["frames"] >= 20 and speed["warmup"] == 3 and speed["batch"] == 1
    assert speed["frame_size"] == [240, 320] and speed["device"] == "cpu"
    assert speed["cpu"] == cpu_name() and speed["threads"] == physical_cores()

    card = (version_dir / "README.md").read_text()
    for text in ("- Species: mouse", "- View: top", f"{speed['frames_per_second']} frames/s on CPU",
                 "![img0001.png with predicted keypoints](sample.jpg)"):
        assert text in card, text


def test_keypoint_adapter_accepts_arrays_and_poses() -> None:
    single = np.zeros((2, 4, 3))
    assert keypoint_array(single).shape == (2, 1, 4, 3)

    class Poses:  # the coming data class: coords (frames, individuals, keypoints, 3)
        coords = np.zeros((2, 3, 4, 3))

    assert keypoint_array(Poses()).shape == (2, 3, 4, 3)
    with pytest.raises(ValueError, match="expected keypoints"):
        keypoint_array(np.zeros((2, 4)))


def test_a_missing_sample_image_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="nope.png"):
        pack(MOUSE, tmp_path / "entry", sample_image=tmp_path / "nope.png")
    assert not (tmp_path / "entry").exists()


def test_entries_without_the_new_fields_stay_readable_and_unchanged() -> None:
    raw = json.loads((REPO / "zoo" / "index.json").read_text())["entries"][0]
    assert not {"species", "view", "speed", "sample"} & set(raw)
    entry = ZooEntry.from_dict(raw)
    assert (entry.species, entry.view, entry.speed, entry.sample) == ("", "", {}, {})
    assert entry.to_dict() == raw
    for bad, match in (({"species": 3}, "'species' must be a string"),
                       ({"speed": "fast"}, "'speed' must be a JSON dict"),
                       ({"sample": {"file": "other.jpg"}}, "'sample.file' must name one of")):
        with pytest.raises(ZooError, match=match):
            ZooEntry.from_dict({**raw, **bad})


# -- the static site ---------------------------------------------------------------------------------
LINK = re.compile(r'\b(?:href|src|action)\s*=\s*"([^"]*)"', re.I)


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_site_is_static_relative_and_escaped(zoo: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert build_site(zoo, site) == site / "index.html"
    expected = {"index.html", *(f"models/{n}/index.html" for n in MODELS),
                *(f"models/{ref.replace('@', '/')}/index.html" for ref in entries(zoo))}
    assert {p.relative_to(site).as_posix() for p in pages(site)} == expected
    assert not (zoo / "index.html").exists()  # written elsewhere: the zoo is left alone
    for page in pages(site):
        html = page.read_text()
        assert "http://" not in html and "https://" not in html, page
        assert html.count("<script") == 1, page  # only the page's own inline script
        assert "<script>window.pwned" not in html
        assert "<b>not bold</b>" not in html and "<em>" not in html and "<i>dots</i>" not in html
        for url in LINK.findall(html):  # every relative link leads to a file, in the site or the zoo
            assert ":" not in url and not url.startswith("/"), (page, url)
            target = (page.parent / url.split("#")[0]).resolve()
            assert target.is_file(), (page, url)
    catalogue = (site / "index.html").read_text()
    assert all(f'data-model="{name}"' in catalogue for name in MODELS)
    assert (site / "models" / "mouse-top" / "1.0.0" / "sample.jpg").read_bytes() == \
        (zoo / "models" / "mouse-top" / "1.0.0" / "sample.jpg").read_bytes()


def test_site_beside_the_index_and_with_a_public_zoo_url(zoo: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(zoo, tmp_path / "zoo")
    build_site(copy)  # the default: into the zoo directory, beside index.json
    card = (copy / "models" / "dots" / "index.html").read_text()
    assert 'href="../../models/dots/0.1.0/dots.onnx"' in card
    build_site(copy, tmp_path / "public", zoo_url="https://zoo.example.org/lab")
    card = (tmp_path / "public" / "models" / "dots" / "index.html").read_text()
    assert 'href="https://zoo.example.org/lab/models/dots/0.1.0/dots.onnx"' in card
    assert "export POSEZOO_ZOO=https://zoo.example.org/lab/" in card


# -- served at / beside the index ----------------------------------------------------------------------
@pytest.fixture
def served(zoo: Path, tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "served-site"
    build_site(zoo, site, beside_index=True)  # what `posezoo zoo serve` does, in a temporary folder
    server = make_server(zoo, "127.0.0.1", 0, site_dir=site)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with NO_PROXY.open(url, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_site_and_index_are_served_side_by_side(served: str, zoo: Path) -> None:
    status, body, headers = get(served)
    assert status == 200 and headers["Content-Type"] == "text/html" and b'data-model="dots"' in body
    status, body, _ = get(served + "index.json")
    assert status == 200 and {e["name"] for e in json.loads(body)["entries"]} == MODELS
    status, body, _ = get(served + "models/dots/0.1.0/dots.onnx")
    assert body == (zoo / "models" / "dots" / "0.1.0" / "dots.onnx").read_bytes()
    assert get(served + "models/mouse-top/")[0] == 200
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as moved:  # a folder without its slash is redirected
        opener.open(served + "models/mouse-top", timeout=10)
    assert moved.value.code == 301 and moved.value.headers["Location"] == "/models/mouse-top/"
    for hidden in ("models/.lock", "models/mouse-top/../../.git", "models/"):
        assert get(served + hidden)[0] == 404, hidden


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_serve_command_shows_the_site(zoo: Path) -> None:
    proc = serve_command(zoo)
    try:
        url = served_url(proc)
        status, body, _ = get(url)
        assert status == 200 and all(f'data-model="{name}"'.encode() in body for name in MODELS)
        assert get(url + "models/dots/0.1.0/sample.jpg")[0] == 200
    finally:
        proc.terminate()
        proc.wait(10)
    assert not (zoo / "index.html").exists()  # the site was built in a temporary folder


def serve_command(zoo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "posezoo.runtime.cli", "zoo", "serve", str(zoo), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def served_url(proc: subprocess.Popen[str]) -> str:
    return proc.stdout.readline().split(" at ")[1].split()[0]


def test_tampered_sample_is_refused_and_serve_keeps_the_downloads(zoo: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(zoo, tmp_path / "zoo")
    (copy / "models" / "dots" / "0.1.0" / "sample.jpg").write_bytes(b"not the packed picture")
    with pytest.raises(ZooError, match="sample.jpg: does not match"):
        build_site(copy, tmp_path / "site")
    proc = serve_command(copy)
    try:
        url = served_url(proc)
        assert get(url)[0] == 404 and get(url + "index.json")[0] == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "serving without the web site" in err and "sample.jpg: does not match" in err


# -- in a real browser -------------------------------------------------------------------------------
needs_browser = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium installed (Debian: apt-get install -y chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        yield b
    finally:
        b.close()


def visible_models(b: Browser) -> list[str]:
    return b.evaluate("Array.from(document.querySelectorAll('tr[data-model]'))"
                      ".filter(r => !r.hidden).map(r => r.dataset.model)")


def set_select(b: Browser, key: str, value: str) -> None:
    b.evaluate(f"(() => {{ const s = document.querySelector('select[data-filter={key}]');"
               f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")


FIGURES = ("Array.from(document.querySelectorAll('[data-key]'))"
           ".map(e => [e.dataset.key, e.dataset.value, e.textContent])")


@needs_browser
def test_browse_the_served_zoo_in_chromium(browser: Browser, served: str, zoo: Path, tmp_path: Path) -> None:
    b = browser
    b.goto(served)
    assert sorted(visible_models(b)) == sorted(MODELS)
    assert b.evaluate("document.getElementById('count').textContent") == "3 of 3 models"
    assert b.evaluate("document.querySelector('.zoo-address').textContent") == served
    # Search and filters.
    set_select(b, "species", "mouse")
    assert sorted(visible_models(b)) == ["mouse-bottom", "mouse-top"]
    set_select(b, "view", "bottom")
    assert visible_models(b) == ["mouse-bottom"]
    set_select(b, "species", "")
    set_select(b, "view", "")
    set_select(b, "keypoints", "3")
    assert visible_models(b) == ["dots"]
    set_select(b, "keypoints", "")
    b.type_text("#q", "tailbase")
    assert sorted(visible_models(b)) == ["mouse-bottom", "mouse-top"]
    # The <script> in a description is text, and never ran.
    assert b.evaluate("typeof window.pwned") == "undefined"
    assert b.evaluate("document.querySelector('tr[data-model=dots] .desc').textContent") == XSS

    # Follow a model link with a real click: its card shows the latest version's figures.
    b.click("a.model-link[href='models/mouse-top/index.html']")
    assert b.evaluate("location.href") == served + "models/mouse-top/index.html"
    entry = entries(zoo)["mouse-top@1.1.0"].to_dict()
    figures = b.evaluate(FIGURES)
    keys = {key for key, _, _ in figures}
    for key in ("name", "version", "species", "view", "license", "speed.frames_per_second", "speed.cpu",
                "speed.threads", "metrics.export_test.rmse", "metrics.export_test.mAP", "files.0.sha256",
                "files.0.size", "provenance.train_config_sha256", "training_data.n_images"):
        assert key in keys, key
    for key, value, text in figures:
        assert json.loads(value) == lookup(entry, key), key
        if key.startswith(("metrics.", "speed.", "training_data.")) and key != "speed.frames_per_second":
            assert text == fmt(lookup(entry, key)), (key, text)
    fps = next(text for key, _, text in figures if key == "speed.frames_per_second")
    assert fps.startswith(fmt(entry["speed"]["frames_per_second"]))
    assert b.evaluate("(() => { const i = document.querySelector('img.sample');"
                      " return [i.complete, i.naturalWidth, i.naturalHeight]; })()") == [True, 320, 240]
    assert b.evaluate("document.querySelectorAll('svg.skeleton circle').length") == 4
    assert b.evaluate("document.querySelectorAll('svg.skeleton line').length") == 5
    versions = b.evaluate("Array.from(document.querySelectorAll('h2 + table a')).map(a => a.textContent)")
    assert ["1.1.0", "1.0.0"] == [v for v in versions if v in ("1.0.0", "1.1.0")]
    shot = b.screenshot(tmp_path / "mouse-top-card.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    # An older version's page, then the card whose texts try to inject HTML.
    b.click("a[href='../../models/mouse-top/1.0.0/index.html']")
    assert b.evaluate("document.querySelector('[data-key=version]').textContent") == "1.0.0"
    b.goto(served + "models/dots/index.html")
    assert b.evaluate("document.querySelector('.desc').textContent") == XSS
    assert b.evaluate("document.querySelector('[data-key=species]').textContent") == "dot <em>"
    assert b.evaluate("typeof window.pwned") == "undefined"
    assert b.evaluate("document.scripts.length") == 1

    # Nothing was asked of any other host, and nothing failed to load with the network cut.
    assert all(url.startswith(served) for url in b.requested_urls()), b.requested_urls()
    assert b.failed_requests() == []


@needs_browser
def test_the_site_works_opened_from_disk(browser: Browser, zoo: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    index = build_site(zoo, site)
    b = browser
    b.goto(index.as_uri())
    assert sorted(visible_models(b)) == sorted(MODELS)
    b.click("a.model-link[href='models/mouse-bottom/index.html']")
    assert b.evaluate("location.href") == (site / "models" / "mouse-bottom" / "index.html").as_uri()
    assert b.evaluate("document.querySelector('img.sample').naturalWidth") == 320
    # Without a server the commands name the zoo's folder on this disk.
    assert b.evaluate("document.querySelector('.zoo-address').textContent") == str(zoo) + "/"
    assert all(url.startswith("file://") for url in b.requested_urls()), b.requested_urls()
    b.screenshot(tmp_path / "from-disk.png")


# -- packing straight from a training run -----------------------------------------------------------
def pack_run(run_dir: Path, output: Path, **options: Any) -> Path:
    """What `posezoo zoo pack RUN` does (the command line orchestrates: the zoo never imports
    training or export): export with the parity gate when the run has no exports/model.onnx,
    then pack with the first test-split image of the run's project as the sample frame."""
    from posezoo.export import export
    from posezoo.training.run import load_run

    if not (run_dir / "exports" / "model.onnx").is_file():
        export(run_dir, progress=lambda _msg: None)
    run = load_run(run_dir)
    sample = run.project.image_path((list(run.split.test) or list(run.split.train))[0])
    return pack(run_dir, output, sample_image=sample, **options)


def test_pack_a_training_run_that_has_no_export(trained_run: Path, tmp_path: Path) -> None:
    from posezoo.zoo.packing import read_entry_dir

    run_dir = shutil.copytree(trained_run, tmp_path / "run")  # the shared run stays unexported
    assert not (run_dir / "exports").exists()
    out = pack_run(run_dir, tmp_path / "entry", species="mouse", view="top", license="MIT")
    assert (run_dir / "exports" / "model.onnx").is_file()
    entry = read_entry_dir(out)  # every file checked against its sha256
    assert entry.provenance["parity"]["passed"] and entry.metrics["export_test"]["rmse"] > 0
    assert entry.sample["source"].endswith(".png") and entry.speed["frames_per_second"] > 0
    publish(out, tmp_path / "zoo")
    card = (build_site(tmp_path / "zoo").parent / "models" / entry.name / "index.html").read_text()
    assert f'data-key="speed.frames_per_second" data-value="{entry.speed["frames_per_second"]}"' in card
