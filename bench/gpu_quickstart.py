"""The quickstart on a GPU, prepared here and run on a machine that has PyTorch and transformers but no network.

Here (the project installed, BoolQ in BOOLQ_DATA_DIR):

    python bench/gpu_quickstart.py bundle          # writes .gpu/ (git-ignored) and checks what travels fits 64 MiB

There, from the repository root with .gpu/ carried beside it (the `device` tool: carry [".gpu"]):

    bash bench/gpu_quickstart.sh                   # installs the carried wheels, then `run`: papermill on CUDA

`.gpu/` holds the MiniLM weights in half precision (xz-compressed; upcast to float32 there, so training keeps float32
master weights under bf16 autocast), BoolQ train and dev (xz), wheels for the packages the GPU machine lacks
(papermill and a Jupyter kernel, datasets, fastcore) and a manifest with each file's SHA-256. `run` writes the
executed notebook and `quickstart-gpu/` (metrics, predictions, plots) to `--out`. On CUDA, `03_train` trains with
bf16 autocast (fp16 where bf16 is missing), TF32 matmuls and batches padded to a multiple of 8; `configs/quickstart-gpu.yaml`
keeps the quickstart's recipe (so accuracy is comparable with the CPU run) and evaluates in large batches.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT/".gpu"
LIMIT_MIB = 64  # the device tool's limit on everything that travels (tracked tree + untracked + carried)
# Packages the quickstart needs on the GPU machine beyond what it has (bench/gpu_device_packages.txt).
ROOT_PACKAGES = ("papermill", "ipykernel", "datasets", "fastcore")
# Needed by the packages above on paper, never by a headless papermill run, and 10 MB of the 64 MiB a call takes:
# ipykernel imports debugpy only for its debugger, IPython imports jedi (and parso) only for tab completion when
# present. (Checked here: papermill ran a notebook in a Python where these three were absent.)
LEFT_OUT = {"debugpy", "jedi", "parso"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".ot")
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")


class BundleError(RuntimeError):
    "A bundle that cannot be built or used; the message names the file."


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_packages(path: Path = ROOT/"bench"/"gpu_device_packages.txt") -> set[str]:
    "Normalised names of the Python packages the GPU machine's image holds (one per line, '#' comments)."
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {normalize(line) for line in lines if line}


# The GPU machine's interpreter, for evaluating requirement markers (extras left out: only what installs by default).
DEVICE_MARKER_ENVIRONMENT = {"extra": "", "python_version": "3.12", "python_full_version": "3.12.3",
                             "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                             "implementation_name": "cpython", "platform_python_implementation": "CPython",
                             "platform_machine": "x86_64"}


def _requirements(dist: metadata.Distribution) -> list[str]:
    "Names `dist` needs unconditionally on Linux with CPython 3.12 (extras and other platforms' markers skipped)."
    from packaging.requirements import Requirement
    requirements = [Requirement(text) for text in dist.requires or []]
    return [r.name for r in requirements if r.marker is None or r.marker.evaluate(DEVICE_MARKER_ENVIRONMENT)]


def missing_packages(roots=ROOT_PACKAGES, available: set[str] | None = None) -> dict[str, str]:
    """The packages to carry: `roots` and everything they need, less what the GPU machine has; name -> the version
    installed here (the versions this project is tested with)."""
    available = device_packages() if available is None else available
    carry, todo = {}, list(roots)
    while todo:
        name = normalize(todo.pop())
        if name in carry or name in available or name in LEFT_OUT:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as e:
            raise BundleError(f"{name} is needed on the GPU machine but not installed here, so its version is "
                              "unknown: pip install it first") from e
        carry[name] = dist.version
        todo.extend(_requirements(dist))
    return dict(sorted(carry.items()))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _xz(source: Path, destination: Path):
    with open(source, "rb") as f, lzma.open(destination, "wb", preset=6) as out:
        shutil.copyfileobj(f, out, 1 << 20)


def traveling_tree_bytes(root: Path = ROOT) -> int:
    "Bytes of the files that travel without being carried: tracked, and untracked but not ignored."
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root/p).stat().st_size for p in listed if p and (root/p).is_file())


def bundle_weights(model_dir: Path, out: Path):
    "The backbone's config and tokenizer files, and its weights as float16 safetensors, xz-compressed."
    from safetensors.torch import load_file, save_file
    out.mkdir(parents=True, exist_ok=True)
    for path in model_dir.iterdir():  # config and tokenizer files: everything at the top but weights
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(path, out/path.name)
    weights = model_dir/"model.safetensors"
    if not weights.is_file():
        raise BundleError(f"{weights}: no safetensors weights to bundle")
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()}
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp)/"model.safetensors"
        save_file(tensors, half, metadata={"format": "pt"})
        _xz(half, out/"model.fp16.safetensors.xz")


def download_wheels(packages: dict[str, str], out: Path):
    "Wheels for CPython 3.12 on x86-64 Linux (the GPU machine's Python), one per package, no dependencies resolved."
    out.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out),
                    *(f"{name}=={version}" for name, version in packages.items())], check=True)


def build_bundle(out: Path = BUNDLE, data_dir: Path | None = None, backbone: str = "minilm", wheels: bool = True,
                 limit_mib: float = LIMIT_MIB, tree_bytes: int | None = None) -> dict:
    "Write the bundle to `out` (replacing it) with its manifest; refuse one that would not travel."
    from boolq_nb.model import resolve_backbone
    data_dir = Path(data_dir or os.environ.get("BOOLQ_DATA_DIR", ROOT.parent/"shared"/"data"/"boolq"))
    missing = [f for f in ("train.jsonl", "dev.jsonl") if not (data_dir/f).is_file()]
    if missing:
        raise BundleError(f"{data_dir}: no {', '.join(missing)} (set BOOLQ_DATA_DIR or --data)")
    model_dir = Path(resolve_backbone(backbone))
    if not model_dir.is_dir():
        raise BundleError(f"backbone {backbone!r} resolves to {model_dir}, not a local folder")
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    bundle_weights(model_dir, staging/"model")
    (staging/"data").mkdir()
    for name in ("train.jsonl", "dev.jsonl"):
        _xz(data_dir/name, staging/"data"/f"{name}.xz")
    packages = missing_packages() if wheels else {}
    if wheels:
        download_wheels(packages, staging/"wheels")
    files = {str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(staging.rglob("*")) if p.is_file()}
    bundle_bytes = sum(f["bytes"] for f in files.values())
    tree_bytes = traveling_tree_bytes() if tree_bytes is None else tree_bytes
    manifest = {"backbone": backbone, "packages": packages, "files": files, "bundle_bytes": bundle_bytes,
                "tree_bytes": tree_bytes, "limit_bytes": int(limit_mib * 2**20)}
    (staging/"manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if bundle_bytes + tree_bytes > manifest["limit_bytes"]:
        shutil.rmtree(staging)
        raise BundleError(f"the bundle ({bundle_bytes / 2**20:.1f} MiB) and the repository's travelling files "
                          f"({tree_bytes / 2**20:.1f} MiB) exceed the {limit_mib} MiB a device call takes")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return manifest


def unpack_bundle(bundle: Path, destination: Path) -> dict:
    "Check every file against the manifest; write the float32 model to `destination/model`, the data to `/data`."
    from safetensors.torch import load_file, save_file
    manifest_path = bundle/"manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: no manifest (build the bundle with `bundle` first)")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest["files"].items():
        path = bundle/name
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        if sha256(path) != expected["sha256"]:
            raise BundleError(f"{path}: SHA-256 differs from the manifest (damaged in transit?)")
    (destination/"data").mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "dev.jsonl"):
        with lzma.open(bundle/"data"/f"{name}.xz", "rb") as f, open(destination/"data"/name, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
    model = destination/"model"
    model.mkdir(parents=True, exist_ok=True)
    for path in (bundle/"model").iterdir():
        if path.is_file() and not path.name.endswith(".xz"):
            shutil.copy2(path, model/path.name)
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp)/"model.safetensors"
        with lzma.open(bundle/"model"/"model.fp16.safetensors.xz", "rb") as f, open(half, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in load_file(half).items()}
    save_file(tensors, model/"model.safetensors", metadata={"format": "pt"})
    return manifest


def run_quickstart(bundle: Path, out: Path, work: Path, allow_cpu: bool = False, extra: list[str] = ()) -> Path:
    "Unpack the bundle into `work` and execute 03_train with papermill; return the run's metrics file."
    import torch
    if not torch.cuda.is_available() and not allow_cpu:
        raise BundleError("no CUDA device here (pass --allow-cpu to rehearse the run on the CPU)")
    unpack_bundle(bundle, work)
    out.mkdir(parents=True, exist_ok=True)
    run_name = "quickstart-gpu"
    command = [sys.executable, "-m", "papermill", str(ROOT/"nbs"/"03_train.ipynb"), str(out/f"{run_name}.ipynb"),
               "-f", str(ROOT/"configs"/"quickstart.yaml"), "-f", str(ROOT/"configs"/"quickstart-gpu.yaml"),
               "-p", "backbone", str(work/"model"), "-p", "data_source", str(work/"data"),
               "-p", "output_dir", str(out), "-p", "model_dir", str(work/"models"), *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    metrics = out/run_name/"metrics.json"
    summary = json.loads(metrics.read_text())
    print(json.dumps({k: summary.get(k) for k in ("accuracy", "macro_f1", "recall_no", "wall_time_s", "train_time_s",
                                                  "train_examples_per_s", "eval_examples_per_s")}), flush=True)
    print(json.dumps(summary.get("environment")), flush=True)
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bundle", help="build .gpu/ here")
    b.add_argument("--data", type=Path, default=None, help="BoolQ folder (default: BOOLQ_DATA_DIR, ../shared/data/boolq)")
    b.add_argument("--backbone", default="minilm")
    b.add_argument("--out", type=Path, default=BUNDLE)
    b.add_argument("--no-wheels", action="store_true", help="skip the wheels (a rehearsal where the packages exist)")
    b.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    r = commands.add_parser("run", help="on the GPU machine: unpack and run the quickstart with papermill")
    r.add_argument("--bundle", type=Path, default=BUNDLE)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT/"runs")))
    r.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())/"boolq-gpu")
    r.add_argument("--allow-cpu", action="store_true")
    # Anything else is passed to papermill, e.g. -p batch_size 64
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "bundle":
            manifest = build_bundle(args.out, args.data, args.backbone, not args.no_wheels, args.limit_mib)
            print(f"{args.out}: {manifest['bundle_bytes'] / 2**20:.1f} MiB in {len(manifest['files'])} files "
                  f"({len(manifest['packages'])} wheels); with the repository "
                  f"{(manifest['bundle_bytes'] + manifest['tree_bytes']) / 2**20:.1f} of {args.limit_mib} MiB")
        else:
            run_quickstart(args.bundle, args.out, args.work, args.allow_cpu, extra)
    except BundleError as e:
        print(f"gpu_quickstart: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
