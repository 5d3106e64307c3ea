"""HTML of the zoo site: the catalogue and one card per model version.

Plain HTML with inline CSS and a few lines of inline script (search and filters, the zoo's own
address in the commands); no framework, no fonts, no request leaves the site. Every text from
an entry goes through `esc` (entries come from other people). Each figure taken from entry.json
carries `data-key` (its path in entry.json, list items by position) and `data-value` (the raw
JSON value), so a reader or a test can check the page against the entry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any, Iterable
from urllib.parse import quote, urljoin, urlsplit

from posezoo.runtime.draw import keypoint_colors

from .card import backend, fine_tune_command, headline_rmse, human_size
from .entry import ZooEntry
from .svg import skeleton_svg

TITLE = "posezoo model zoo"

CSS = """
:root{--fg:#1d232a;--muted:#5b6670;--bg:#fff;--line:#dde3e8;--accent:#0b6bcb;--code:#f3f5f7}
@media (prefers-color-scheme:dark){:root{--fg:#e6eaee;--muted:#9aa6b1;--bg:#14181c;--line:#2c343b;
--accent:#6cb2ff;--code:#1d2329}}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:var(--fg);background:var(--bg)}main,header,footer{max-width:1100px;margin:0 auto;
padding:0 20px}header{padding-top:14px}footer{color:var(--muted);padding:30px 20px}a{color:var(--accent)}
h1{margin:.4em 0 .2em}h1 .version{color:var(--muted);font-weight:400}h2{margin-top:1.6em;
border-bottom:1px solid var(--line);padding-bottom:.2em}.muted{color:var(--muted)}
table{border-collapse:collapse;margin:.5em 0}#models{width:100%}th,td{text-align:left;padding:6px 8px;
border-bottom:1px solid var(--line);vertical-align:top}th{font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap}code,pre{background:var(--code);border-radius:4px;
font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}code{padding:1px 4px}
pre{padding:10px 12px;overflow-x:auto}pre code{padding:0;background:none}.sha{word-break:break-all}.desc{white-space:pre-wrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:1em 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
.figures{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}figure{margin:0}
figure.frame{flex:1 1 420px;max-width:640px}
figure img{width:min(100%,640px);height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{color:var(--muted);font-size:13px}svg.skeleton{border:1px solid var(--line);
border-radius:4px;max-width:100%;height:auto}svg.skeleton line{stroke:var(--muted);stroke-width:3}
svg.skeleton text{font-size:12px;fill:var(--fg)}.swatch{display:inline-block;width:.9em;
height:.9em;border-radius:50%;vertical-align:-.1em;margin-right:.4em}
#filters{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:1em 0}
#filters input{flex:1 1 260px}#filters input,#filters select{font:inherit;padding:5px 8px;
color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:4px}
tr[hidden]{display:none}
"""

# Search and filters on the catalogue (rows carry data-* attributes), and the zoo's address in
# the commands, read from where the page was opened. textContent only: nothing is parsed as HTML.
SCRIPT = """
(function(){
for (const el of document.querySelectorAll('[data-zoo-root]')) {
  const u = new URL(el.dataset.zooRoot || './', location.href);
  el.textContent = u.protocol === 'file:' ? decodeURIComponent(u.pathname) : u.href;
}
const form = document.getElementById('filters');
if (!form) return;
form.hidden = false;
const q = document.getElementById('q'), count = document.getElementById('count');
const selects = Array.from(form.querySelectorAll('select[data-filter]'));
const rows = Array.from(document.querySelectorAll('tr[data-model]'));
function apply() {
  const text = q.value.trim().toLowerCase();
  let shown = 0;
  for (const row of rows) {
    let ok = !text || row.dataset.search.includes(text);
    for (const s of selects) if (s.value && row.dataset[s.dataset.filter] !== s.value) ok = false;
    row.hidden = !ok;
    if (ok) shown++;
  }
  count.textContent = shown + ' of ' + rows.length + ' models';
}
form.addEventListener('input', apply);
form.addEventListener('submit', e => e.preventDefault());
apply();
})();
"""


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """How a figure is shown: floats to 4 significant digits, other values as they are."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def fig(key: str, value: Any, text: str | None = None, cls: str = "") -> str:
    """One figure of the entry, with its entry.json path and raw value attached."""
    klass = f' class="{esc(cls)}"' if cls else ""
    return (f'<span{klass} data-key="{esc(key)}" data-value="{esc(json.dumps(value))}">'
            f'{esc(fmt(value) if text is None else text)}</span>')


@dataclass(frozen=True)
class Links:
    """Relative addresses from one page: to the site root, and to the zoo's own files.

    `zoo_root` is the zoo directory as seen from the site root: "" when the site lives beside
    index.json (in the zoo directory, or overlaid by `posezoo zoo serve`), a relative path when
    it was written elsewhere, or an absolute URL given by the publisher.
    """

    root: str
    zoo_root: str

    def page(self, *parts: str) -> str:
        return self.root + "/".join(quote(p) for p in parts)

    def zoo_file(self, url: str) -> str:
        if urlsplit(url).scheme:
            return url
        if urlsplit(self.zoo_root).scheme:
            return urljoin(self.zoo_root, url)
        return self.root + self.zoo_root + url

    def zoo_address(self) -> str:
        """What the JS turns into the zoo's address (the directory that holds index.json)."""
        return self.zoo_root if urlsplit(self.zoo_root).scheme else self.root + self.zoo_root


def page(title: str, body: str, links: Links) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header><a href="{esc(links.page("index.html"))}">{esc(TITLE)}</a></header>\n'
        f"<main>\n{body}\n</main>\n"
        '<footer>Generated by posezoo. Every figure comes from the entry\'s entry.json.</footer>\n'
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _options(label: str, key: str, values: Iterable[str]) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return (f'<label>{esc(label)} <select data-filter="{esc(key)}">'
            f'<option value="">all</option>{opts}</select></label>')


def _sorted_values(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if v}, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


def catalogue(models: dict[str, list[ZooEntry]], links: Links) -> str:
    """The front page: one row per model (its latest version), searchable and filterable."""
    latest = {name: versions[-1] for name, versions in models.items()}
    rows = []
    for name, e in latest.items():
        search = " ".join([e.name, e.description, e.species, e.view, backend(e), *e.keypoints]).lower()
        rmse, fps = headline_rmse(e), e.speed.get("frames_per_second")
        n = len(models[name])
        rows.append(
            f'<tr data-model="{esc(name)}" data-species="{esc(e.species)}" data-view="{esc(e.view)}" '
            f'data-keypoints="{len(e.keypoints)}" data-backend="{esc(backend(e))}" data-search="{esc(search)}">'
            f'<td><a class="model-link" href="{esc(links.page("models", name, "index.html"))}">{esc(name)}</a>'
            f'<div class="desc muted">{esc(e.description)}</div></td>'
            f"<td>{esc(e.species or '—')}</td><td>{esc(e.view or '—')}</td>"
            f'<td class="num">{len(e.keypoints)}</td><td>{esc(backend(e) or "—")}</td>'
            f'<td class="num">{esc(fmt(rmse)) if rmse is not None else "—"}</td>'
            f'<td class="num">{esc(fmt(fps)) if fps is not None else "—"}</td>'
            f'<td class="num">{esc(human_size(e.size))}</td>'
            f"<td>{esc(e.version)}{f' ({n} versions)' if n > 1 else ''}</td></tr>")
    entries = list(latest.values())
    filters = ('<form id="filters" hidden><input id="q" type="search" '
               'placeholder="Search names, descriptions, keypoints" aria-label="search">'
               + _options("Species", "species", _sorted_values(e.species for e in entries))
               + _options("View", "view", _sorted_values(e.view for e in entries))
               + _options("Keypoints", "keypoints", _sorted_values(str(len(e.keypoints)) for e in entries))
               + _options("Backend", "backend", _sorted_values(backend(e) for e in entries))
               + '<output id="count"></output></form>')
    n_versions = sum(len(v) for v in models.values())
    body = (
        f"<h1>{esc(TITLE)}</h1>\n"
        f'<p class="muted">{len(models)} models, {n_versions} versions. Test error is the RMSE in '
        "pixels on the held-out split; frames/s were measured on a CPU when each model was packed "
        "(the card names the CPU).</p>\n"
        "<pre><code>export POSEZOO_ZOO=" + _address(links) + "\nposezoo zoo list</code></pre>\n"
        + filters + "\n"
        '<table id="models"><thead><tr><th>Model</th><th>Species</th><th>View</th>'
        '<th>Keypoints</th><th>Backend</th><th>Test RMSE (px)</th><th>CPU frames/s</th><th>Size</th>'
        "<th>Latest version</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )
    return page(TITLE, body, links)


def _address(links: Links) -> str:
    """The zoo's address for commands: exact when the publisher gave a URL, else filled in by
    the page's script from where it was opened ("ZOO_URL" without script)."""
    addr = links.zoo_address()
    if urlsplit(addr).scheme:
        return esc(addr)
    return f'<span class="zoo-address" data-zoo-root="{esc(addr)}">ZOO_URL</span>'


def _flatten(value: Any, key: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [item for k, v in value.items() for item in _flatten(v, f"{key}.{k}")]
    return [(key, value)]


def _table(value: Any, key: str, header: tuple[str, str] = ("field", "value")) -> str:
    """Nested dicts become rows named by their path below `key`."""
    if value in (None, {}, [], ""):
        return '<p class="muted">Not recorded.</p>'
    rows = "".join(f"<tr><th>{esc(path[len(key) + 1:] or key)}</th><td>{fig(path, v)}</td></tr>"
                   for path, v in _flatten(value, key))
    return f"<table><thead><tr><th>{esc(header[0])}</th><th>{esc(header[1])}</th></tr></thead>{rows}</table>"


def _facts(e: ZooEntry, n_versions: int) -> str:
    prov = e.provenance
    items = [("Species", fig("species", e.species) if e.species else "—"),
             ("View", fig("view", e.view) if e.view else "—"),
             ("Keypoints", f"{len(e.keypoints)}"),
             ("Backend", fig("provenance.backend", prov["backend"]) if "backend" in prov else "—"),
             ("Architecture", fig("provenance.model", prov["model"]) if "model" in prov else "—"),
             ("Precision", fig("provenance.precision", prov["precision"]) if "precision" in prov else "—"),
             ("CPU speed", fig("speed.frames_per_second", e.speed["frames_per_second"],
                               f"{fmt(e.speed['frames_per_second'])} frames/s")
              if "frames_per_second" in e.speed else "not measured"),
             ("Licence", fig("license", e.license) if e.license else "not stated"),
             ("Size", esc(human_size(e.size))),
             ("Created", fig("created", e.created) if e.created else "—"),
             ("Versions", str(n_versions))]
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _sample(e: ZooEntry, links: Links, sample_url: str | None) -> str:
    if not sample_url:
        return '<p class="muted">No sample frame was packed with this version.</p>'
    s = e.sample
    size = s.get("image_size") or ["?", "?"]
    animals = s.get("individuals", 1)
    caption = (f"{esc(s.get('source', 'sample'))} ({esc(size[0])}x{esc(size[1])}): predicted keypoints "
               f"with score at least {esc(fmt(s.get('pcutoff')))}"
               + (f", {esc(animals)} animals" if isinstance(animals, int) and animals > 1 else ""))
    return (f'<figure class="frame"><img class="sample" src="{esc(links.zoo_file(sample_url))}" '
            f'alt="sample frame with the keypoints {esc(e.ref)} predicted">'
            f"<figcaption>{caption}</figcaption></figure>")


def _keypoints(e: ZooEntry) -> str:
    colours = ["#%02x%02x%02x" % (r, g, b) for b, g, r in keypoint_colors(len(e.keypoints))]
    rows = "".join(f'<tr><td class="num">{i}</td><td><span class="swatch" style="background:{c}"></span>'
                   f"{fig(f'keypoints.{i}', k)}</td></tr>"
                   for i, (k, c) in enumerate(zip(e.keypoints, colours)))
    return f"<table><thead><tr><th>#</th><th>keypoint</th></tr></thead>{rows}</table>"


def _speed(e: ZooEntry) -> str:
    s = e.speed
    if not s:
        return '<p class="muted">Not measured when this version was packed.</p>'
    size = s.get("frame_size")
    line = (f"{fig('speed.frames_per_second', s.get('frames_per_second'))} frames/s "
            f"({fig('speed.ms_per_frame_median', s.get('ms_per_frame_median'))} ms per frame, median) "
            f"on {fig('speed.cpu', s.get('cpu'))} with {fig('speed.threads', s.get('threads'))} threads, "
            + (f"frames of {esc(size[0])}x{esc(size[1])} pixels, " if isinstance(size, list) and len(size) == 2 else "")
            + f"batch {fig('speed.batch', s.get('batch'))}, after {esc(s.get('warmup', '?'))} warm-up runs, "
            f"onnxruntime {fig('speed.onnxruntime', s.get('onnxruntime'))}, measured "
            f"{fig('speed.measured', s.get('measured'))}.")
    return f"<p>{line}</p>"


def _commands(e: ZooEntry, links: Links) -> str:
    ref = esc(e.ref)
    shell = ("export POSEZOO_ZOO=" + _address(links) + "\n"
             f"posezoo zoo pull {ref}\n"
             f"posezoo analyze zoo:{ref} session1.mp4 --csv\n"
             f"posezoo label-video zoo:{ref} session1.mp4\n"
             f"posezoo zoo info {ref}")
    tune = fine_tune_command(e)  # packed --with-weights: others can fine-tune from it
    if tune is not None:
        shell += f"\n{esc(tune)}  # fine-tune on your own labels"
    python = ("from posezoo.runtime import PoseModel\n\n"
              f'model = PoseModel.load("zoo:{ref}")  # downloads once, checks sha256\n'
              'poses = model.predict(frames, color="bgr")  # keypoints: x, y, score per frame')
    return f"<pre><code>{shell}</code></pre>\n<pre><code>{python}</code></pre>"


def _files(e: ZooEntry, links: Links, urls: list[str]) -> str:
    rows = "".join(
        f'<tr><td><a href="{esc(links.zoo_file(url))}" download>{esc(f.name)}</a></td>'
        f'<td class="num">{fig(f"files.{i}.size", f.size, human_size(f.size))}</td>'
        f'<td class="sha"><code>{fig(f"files.{i}.sha256", f.sha256)}</code></td></tr>'
        for i, (f, url) in enumerate(zip(e.files, urls)))
    return f"<table><thead><tr><th>file</th><th>size</th><th>sha256</th></tr></thead>{rows}</table>"


def _versions(versions: list[ZooEntry], current: ZooEntry, links: Links) -> str:
    rows = []
    for v in reversed(versions):
        rmse, fps = headline_rmse(v), v.speed.get("frames_per_second")
        mark = " (this page)" if v.version == current.version else ""
        rows.append(
            f'<tr><td><a href="{esc(links.page("models", v.name, v.version, "index.html"))}">'
            f"{esc(v.version)}</a>{mark}</td><td>{esc(v.created or '—')}</td>"
            f'<td class="num">{esc(fmt(rmse)) if rmse is not None else "—"}</td>'
            f'<td class="num">{esc(fmt(fps)) if fps is not None else "—"}</td>'
            f'<td class="num">{esc(human_size(v.size))}</td></tr>')
    return ("<table><thead><tr><th>version</th><th>created</th><th>test RMSE (px)</th>"
            "<th>CPU frames/s</th><th>size</th></tr></thead>" + "".join(rows) + "</table>")


def card(e: ZooEntry, versions: list[ZooEntry], links: Links, urls: list[str]) -> str:
    """The page of one model version. `urls` are its files' URLs as the index lists them."""
    by_name = dict(zip((f.name for f in e.files), urls))
    sample_url = by_name.get(e.sample.get("file", ""))
    if sample_url and urlsplit(sample_url).scheme:  # hosted elsewhere: no external assets
        sample_url = None
    latest = versions[-1].version
    note = "" if e.version == latest else (
        f'<p>A newer version exists: <a href="{esc(links.page("models", e.name, latest, "index.html"))}">'
        f"{esc(latest)}</a>.</p>")
    prov = {k: v for k, v in e.provenance.items()
            if k not in ("metrics", "dataset", "backend", "model", "precision")}
    body = (
        f'<h1>{fig("name", e.name)} <span class="version">{fig("version", e.version)}</span></h1>\n{note}'
        + (f'<p class="desc">{fig("description", e.description)}</p>' if e.description else "")
        + _facts(e, len(versions))
        + '<section class="figures"><figure>'
        + skeleton_svg(e.keypoints, e.skeleton, e.sample)
        + f"<figcaption>Skeleton: {len(e.keypoints)} keypoints, {len(e.skeleton)} edges</figcaption></figure>"
        + _sample(e, links, sample_url) + "</section>\n"
        + "<h2>Keypoints</h2>" + _keypoints(e)
        + "<h2>Accuracy</h2>" + _table(e.metrics, "metrics", ("metric", "value"))
        + "<h2>Speed</h2>" + _speed(e)
        + "<h2>Use it</h2>" + _commands(e, links)
        + "<h2>Files</h2>" + _files(e, links, urls)
        + "<h2>Training data</h2>" + _table(e.training_data, "training_data")
        + "<h2>Provenance</h2>" + _table(prov, "provenance")
        + "<h2>Versions</h2>" + _versions(versions, e, links)
    )
    return page(f"{e.name} {e.version} · {TITLE}", body, links)
