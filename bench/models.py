#!/usr/bin/env python
"""Speed of the model nodes on this machine.

  0. cold start: a fresh `pixelmill run workflows/daily-shapes.yaml` (new process, new PIXELMILL_HOME) as it
     runs now, against two baselines. The reconstruction: today's code first importing what the model nodes
     imported then (diffusers' AutoPipelineForText2Image and the BLIP classes), with Python's default
     collector settings for the whole process (no pixelmill.cli.oneshot), so that the import cache and the
     lazy imports (scipy.stats, torch._dynamo, ...) do not act (the libraries are imported before the CLI
     could install its hooks). The real old code: the commit
     the issue was filed against (`--old-ref`, default 899bc07, the main commit every issue-15 branch started
     from), exported with `git archive` into a temporary folder that comes first on PYTHONPATH and run with
     the same virtual environment; all interleaved, median: ratio target <= 0.6 (`--cold-reps 0` skips this
     part, `--old-ref ''` the old commit)
  1. generate_image node vs the raw diffusers pipeline call (same model, steps, seed), both warm:
     time ratio (target <= 1.02x) and whether the pixels are identical
  2. first vs second node run in one process: the model is loaded once
  3. embedded image time (target <= 0.5 s) and caption time (target <= 0.05 s)

    python bench/models.py [--reps 10] [--threads 1] [--cold-reps 2] [--old-ref 899bc07] [--cold-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

OLD_IMPORTS = ("from diffusers import AutoPipelineForText2Image\n"
               "from transformers import BlipForConditionalGeneration, BlipProcessor\n")
# the run as before the cold-start work: the command without its one-shot collector settings (the decorator
# keeps the plain function as __wrapped__); the import hooks do not act, since transformers, diffusers (with
# torch._dynamo) and scipy are imported above, before the CLI installs them
BEFORE = ("import pixelmill.cli.workflows as _w\n"
          "_w.run_cmd.callback = _w.run_cmd.callback.__wrapped__\n")


# the main commit the issue was filed against: the last one before any issue-15 work (every branch of that
# round, h/models included, started from it; the commits on main after it and before the merges are posting
# work of another issue)
OLD_REF = "899bc07"
# the nodes the run uses, resolved through the installed entry points (names and targets are the same then)
RUN_NODES = ("prompt", "moderate", "generate_image", "caption", "label_ai", "post_social")


def export_ref(ref: str) -> Path | None:
    """The tree of ``ref`` in a temporary folder, its ``nodes/`` importable as ``pixelmill_nodes``; None if no git."""
    folder = Path(tempfile.mkdtemp(prefix="pixelmill-old-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"   old commit {ref!r} not exported ({exc}); only the reconstruction is timed")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    (folder / "pixelmill_nodes").symlink_to("nodes", target_is_directory=True)
    return folder


def imported_from(env: dict, cwd: Path) -> dict:
    """Where ``pixelmill``, ``pixelmill_nodes`` and each run node's module come from under ``env``."""
    code = ("import importlib.metadata as md, json, pixelmill, pixelmill_nodes\n"
            "eps = {e.name: e for e in md.entry_points(group='pixelmill.nodes')}\n"
            f"found = {{n: eps[n].load() for n in {RUN_NODES!r}}}\n"
            "import sys\n"
            "print(json.dumps({'pixelmill': pixelmill.__file__, 'pixelmill_nodes': pixelmill_nodes.__file__,\n"
            "  **{n: sys.modules[c.__module__].__file__ for n, c in found.items()}}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(cwd))
    if out.returncode != 0:
        raise RuntimeError(f"the old tree's nodes do not resolve: {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_start(reps: int, old_ref: str) -> None:
    """Wall (and CPU) time of a fresh CLI run, now vs before (interleaved, order rotating, median)."""
    import resource

    workflow = str(ROOT / "workflows" / "daily-shapes.yaml")
    run = f"from pixelmill.cli import main\nmain(['run', {workflow!r}, '--json'], standalone_mode=True)\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}
    # (label, code, extra environment, working folder)
    variants = [("rebuilt", OLD_IMPORTS + BEFORE + run, {}, ROOT), ("now", run, {}, ROOT)]
    old_tree = export_ref(old_ref) if old_ref else None
    if old_tree is not None:
        old_env = {**env, "PYTHONPATH": os.pathsep.join([str(old_tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        where = imported_from(old_env, old_tree)
        stray = {k: v for k, v in where.items() if not Path(v).resolve().is_relative_to(old_tree.resolve())}
        if stray:
            raise RuntimeError(f"the old run would import today's code: {stray}")
        print(f"   old commit {old_ref}: pixelmill from {where['pixelmill']}, nodes from "
              f"{Path(where['pixelmill_nodes']).parent} ({', '.join(RUN_NODES)} resolve there)")
        old_run = ("from pixelmill.cli import main\n"
                   f"main(['run', {str(old_tree / 'workflows' / 'daily-shapes.yaml')!r}, '--json'], standalone_mode=True)\n")
        variants.append((f"commit {old_ref}", old_run, {"PYTHONPATH": old_env["PYTHONPATH"]}, old_tree))
    times: dict[str, list[float]] = {v[0]: [] for v in variants}
    cpu: dict[str, list[float]] = {v[0]: [] for v in variants}
    # one untimed run of each first: it fills pixelmill.importcache's file as the first run on a machine does
    # (later runs read it; the "before" runs import transformers before the CLI could install the cache) and
    # reads every file once
    for _label, code, extra, cwd in variants:
        subprocess.run([sys.executable, "-c", code], capture_output=True,
                       env={**env, **extra, "PIXELMILL_HOME": tempfile.mkdtemp()}, cwd=str(cwd))
    for rep in range(reps):
        shift = rep % len(variants)
        for label, code, extra, cwd in variants[shift:] + variants[:shift]:
            home = tempfile.mkdtemp(prefix="pixelmill-cold-")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**env, **extra, "PIXELMILL_HOME": home}, cwd=str(cwd))
            times[label].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[label].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            status = None
            try:
                status = json.loads(out.stdout).get("status")
            except ValueError:
                pass
            if out.returncode != 0 or status != "succeeded":
                print(f"   cold run ({label}) failed (exit {out.returncode}, status {status}): {out.stderr[-500:]}")
            shutil.rmtree(home, ignore_errors=True)
    now, cnow = statistics.median(times["now"]), statistics.median(cpu["now"])
    print(f"0. cold start, fresh `pixelmill run workflows/daily-shapes.yaml`: now {now:.2f} s wall, {cnow:.2f} s CPU "
          f"(median of {reps}, interleaved)  [target <= 0.6x before]")
    for label, *_ in variants:
        if label == "now":
            continue
        old, cold = statistics.median(times[label]), statistics.median(cpu[label])
        name = ("today's code with the old imports and collector (reconstruction)" if label == "rebuilt"
                else f"the code of {label}")
        print(f"   vs {name}: {old:.2f} s wall, {cold:.2f} s CPU: {now / old:.2f}x wall, {cnow / cold:.2f}x CPU")
    print(f"   load average after it (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    if old_tree is not None:
        shutil.rmtree(old_tree, ignore_errors=True)


def main() -> int:
    from diffusers import AutoPipelineForText2Image
    from PIL import Image

    from pixelmill.models.locate import embedded_path, recommended
    from pixelmill.models.manager import SERVICE_KEY
    from pixelmill.node import NodeContext, Services
    from pixelmill_nodes.caption import CaptionNode
    from pixelmill_nodes.generate_image import GenerateImageNode

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cold-reps", type=int, default=2)
    ap.add_argument("--old-ref", default=OLD_REF, help="git commit timed as the code before ('' skips it)")
    ap.add_argument("--cold-only", action="store_true", help="part 0 only")
    args = ap.parse_args()
    if args.cold_reps:
        cold_start(args.cold_reps, args.old_ref)
    if args.cold_only:
        return 0
    torch.set_num_threads(args.threads)
    sd = embedded_path("sd")
    d = recommended("embedded", str(sd))
    prompt, seed = "a large red circle on a blue background", 1234
    tmp = Path(tempfile.mkdtemp())
    services = Services()

    def ctx(step):
        return NodeContext(run_id="bench", step_id=step, workflow="bench", artifacts_root=tmp, secrets=None,
                           services=services)

    gen = GenerateImageNode(GenerateImageNode.Config(model="embedded", device="cpu"))
    inputs = GenerateImageNode.Inputs(prompt=prompt, seed=seed)

    # 2. first vs second run in one process
    t0 = time.perf_counter()
    out1 = gen.run(inputs, ctx("gen"))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen.run(inputs, ctx("gen"))
    second = time.perf_counter() - t0
    manager = services.get(SERVICE_KEY)
    print(f"2. first node run {first * 1000:.0f} ms (includes the load), second {second * 1000:.0f} ms; "
          f"loads: {sum(manager.load_counts.values())}")

    # 1. node vs raw pipeline, warm, interleaved
    raw = AutoPipelineForText2Image.from_pretrained(str(sd), torch_dtype=torch.float32, local_files_only=True)
    raw.set_progress_bar_config(disable=True)

    def raw_call():
        g = torch.Generator("cpu").manual_seed(seed)
        with torch.inference_mode():
            return raw(prompt=prompt, num_inference_steps=d["steps"], guidance_scale=d["guidance"], width=d["width"],
                       height=d["height"], generator=g).images[0]

    raw_img = raw_call()
    node_times, raw_times = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        out = gen.run(inputs, ctx("gen"))
        node_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw_call()
        raw_times.append(time.perf_counter() - t0)
    node_img = Image.open(tmp / "bench" / out.image.name).convert("RGB")
    same = np.array_equal(np.asarray(node_img), np.asarray(raw_img.convert("RGB")))
    nm, rm = statistics.median(node_times), statistics.median(raw_times)
    print(f"1. node {nm * 1000:.1f} ms vs raw pipeline {rm * 1000:.1f} ms (median of {args.reps}, warm, "
          f"{d['steps']} steps, guidance {d['guidance']}): {nm / rm:.3f}x [target <= 1.02x]; pixel-identical: {same}")
    print(f"3. embedded image (node, incl. PNG write) {nm * 1000:.0f} ms  [target <= 500 ms]")

    cap = CaptionNode(CaptionNode.Config(model="embedded", device="cpu"))
    cin = CaptionNode.Inputs(image=out1.image)
    cap.run(cin, ctx("cap"))  # load
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        res = cap.run(cin, ctx("cap"))
        times.append(time.perf_counter() - t0)
    print(f"   caption (node, one image, incl. PNG read) {statistics.median(times) * 1000:.1f} ms  "
          f"[target <= 50 ms]  -> '{res.text}'")
    loads = {key[0]: n for key, n in manager.load_counts.items()}
    print(f"   loads in this process: {loads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
