"""Generate the golden set with the code BEFORE the issue-13 refactor (run once, output committed)."""
import json, shutil, subprocess, sys
from pathlib import Path
import numpy as np
REPO = Path("/work/main")
OUT = REPO / "tests" / "golden"
OUT.mkdir(exist_ok=True)
from posezoo.training.synthetic import make_project
import tempfile
tmp = Path(tempfile.mkdtemp())
proj = make_project(tmp / "proj", n_frames=12, video_frames=40, image_size=(160, 128), seed=3)
video = proj / "videos" / "mouse1.mp4"
shutil.copy(video, OUT / "mouse.mp4")
model = REPO / "zoo/models/synthetic-mouse/1.0.0/synthetic-mouse.onnx"
exe = str(REPO / ".venv/bin/posezoo")
def run(*a):
    r = subprocess.run([exe, *map(str, a)], capture_output=True, text=True)
    print(r.stdout[-500:], r.stderr[-500:]); assert r.returncode == 0, r
res = tmp / "res"
run("analyze", model, OUT / "mouse.mp4", "--csv", "--nwb", "--output-dir", res, "-q")
for f in res.iterdir():
    if f.suffix in (".h5", ".csv", ".nwb"):
        shutil.copy(f, OUT / f.name)
# labeled-data of the project (a real CollectedData table) and evaluate json
shutil.copytree(proj / "labeled-data", OUT / "project" / "labeled-data")
shutil.copy(proj / "config.yaml", OUT / "project" / "config.yaml")
run("evaluate", model, OUT / "project", "--split", "all", "--json", tmp / "metrics.json")
doc = json.loads((tmp / "metrics.json").read_text())
(OUT / "evaluate.json").write_text(json.dumps(doc["metrics"], indent=1))
imgs = sorted((OUT / "project" / "labeled-data").rglob("*.png"))[:3]
run("predict", model, *imgs, "--output", tmp / "pred.csv")
text = (tmp / "pred.csv").read_text().replace(str(OUT) + "/", "")
(OUT / "predict.csv").write_text(text)
print(sorted(p.name for p in OUT.iterdir()))
