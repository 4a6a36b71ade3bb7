"""Flag rate of multibone.imaging.ood on a demo run: external test crops vs real radiographs.

Usage: python benchmarks/bench_ood.py RUN   (RUN = a `multibone demo` folder; writes /tmp/H_ood/ood_out)
"""
import sys, time, numpy as np, pandas as pd
from pathlib import Path
from pydicom.data import get_testdata_file
from multibone.imaging.folds import load_fold
from multibone.imaging import ood
from multibone.io import read_radiograph, crop_roi
run = Path(sys.argv[1])
man = pd.read_csv(run/"cohort"/"manifest.csv", dtype={"patient_id":str})
pred = pd.read_csv(run/"predictions.csv", dtype={"patient_id":str})[["patient_id","split"]]
man = man.merge(pred, on="patient_id")
man["image_path"] = [str(run/"cohort"/p) for p in man["image_path"]]
w = run/"imaging"/"weights"; bbs = sorted(p.name for p in w.iterdir())
dev, ext = man[man.split=="dev"], man[man.split!="dev"]
t = time.perf_counter()
model = ood.fit_from_weights(w, bbs, dev, "/tmp/H_ood/ood_out")
fit_s = time.perf_counter() - t
models = {b: load_fold(w, b, 0) for b in bbs}
margin = models[bbs[0]][1]["crop_margin"]
ec = ood.crops_of(ext, margin)
t = time.perf_counter(); r_ext = model.check(ood.embed_all(models, ec)); chk = (time.perf_counter()-t)/len(ec)
names = [n for n in ["RG1_UNCR.dcm","RG2_UNCR.dcm","RG3_UNCR.dcm","RG1_J2KR.dcm","RG3_J2KR.dcm","RG1_J2KI.dcm","RG3_J2KI.dcm"] if get_testdata_file(n)]
whole, boxes = [], []
rng = np.random.default_rng(0)
for n in names:
    pix = read_radiograph(get_testdata_file(n)).pixels; h, wd = pix.shape
    whole.append(pix)
    for _ in range(10):
        s = int(min(h, wd) * rng.uniform(0.08, 0.25)); y0 = rng.integers(0, h-s); x0 = rng.integers(0, wd-s)
        boxes.append(crop_roi(pix, (x0, y0, x0+s, y0+s), margin=margin))
r_whole = model.check(ood.embed_all(models, whole)); r_box = model.check(ood.embed_all(models, boxes))
rate = lambda r: np.mean([x["unlike_training"] for x in r])
print(f"run={run} backbones={bbs} dev crops={model.info['n_crops']} dev flag rate (out-of-sample)={model.info['dev_flag_rate']:.3f}")
print(f"external test crops: {sum(x['unlike_training'] for x in r_ext)}/{len(r_ext)} = {rate(r_ext):.3f}")
print(f"pydicom-data radiographs, whole image: {sum(x['unlike_training'] for x in r_whole)}/{len(r_whole)} = {rate(r_whole):.3f} ({', '.join(names)})")
print(f"pydicom-data radiographs, random lesion-sized boxes: {sum(x['unlike_training'] for x in r_box)}/{len(r_box)} = {rate(r_box):.3f}")
print(f"fit {fit_s:.1f} s (reading + embedding dev crops + CV fits); check {1000*chk:.1f} ms/image")
