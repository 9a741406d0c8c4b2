"""bench/gpu_quickstart.py, everything short of the GPU: what it carries, the size limit, the round trip of weights
and data, damage in transit, and the papermill run itself, rehearsed on the CPU with a tiny model."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT/"bench"))
import gpu_quickstart as gq  # noqa: E402


def test_carries_what_the_gpu_machine_lacks_and_nothing_it_has():
    carried = gq.missing_packages()
    assert {"papermill", "ipykernel", "datasets", "fastcore", "dill", "multiprocess", "pyzmq", "nbclient"} <= set(carried)
    assert not {"torch", "transformers", "numpy", "pandas", "pyarrow", "accelerate"} & set(carried)
    assert not gq.LEFT_OUT & set(carried)
    assert all(version for version in carried.values())


def test_unknown_needed_package_is_named():
    with pytest.raises(gq.BundleError, match="no-such-package-xyz is needed on the GPU machine"):
        gq.missing_packages(roots=("no-such-package-xyz",), available=set())


@pytest.fixture(scope="module")
def tiny_bundle(tiny_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")/".gpu"
    manifest = gq.build_bundle(out, tiny_assets["data"], str(tiny_assets["bert"]), wheels=False, tree_bytes=0)
    return out, manifest


def test_bundle_round_trip(tiny_assets, tiny_bundle, tmp_path):
    from safetensors.torch import load_file
    out, manifest = tiny_bundle
    assert json.loads((out/"manifest.json").read_text()) == manifest
    assert set(manifest["files"]) >= {"model/model.fp16.safetensors.xz", "data/train.jsonl.xz", "data/dev.jsonl.xz",
                                      "model/config.json"}
    gq.unpack_bundle(out, tmp_path)
    for name in ("train.jsonl", "dev.jsonl"):
        assert (tmp_path/"data"/name).read_bytes() == (tiny_assets["data"]/name).read_bytes()
    original, unpacked = (load_file(p/"model.safetensors") for p in (tiny_assets["bert"], tmp_path/"model"))
    assert original.keys() == unpacked.keys()
    for key, tensor in original.items():  # float32 again, holding the half-precision values
        assert unpacked[key].dtype == tensor.dtype
        np.testing.assert_array_equal(unpacked[key].numpy(), tensor.half().to(tensor.dtype).numpy(), err_msg=key)


def test_damaged_file_is_named(tiny_bundle, tmp_path):
    import shutil
    copy = tmp_path/"bundle"
    shutil.copytree(tiny_bundle[0], copy)
    target = copy/"data"/"dev.jsonl.xz"
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    with pytest.raises(gq.BundleError, match=r"dev\.jsonl\.xz: SHA-256 differs"):
        gq.unpack_bundle(copy, tmp_path/"work")


def test_bundle_over_the_limit_is_refused(tiny_assets, tmp_path):
    out = tmp_path/".gpu"
    with pytest.raises(gq.BundleError, match="exceed the 0.01 MiB"):
        gq.build_bundle(out, tiny_assets["data"], str(tiny_assets["bert"]), wheels=False, limit_mib=0.01, tree_bytes=0)
    assert not out.exists() and not (tmp_path/".gpu.tmp").exists()


def test_run_refuses_a_machine_without_cuda(tiny_bundle, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT/"bench"/"gpu_quickstart.py"), "run", "--bundle", str(tiny_bundle[0]),
                           "--out", str(tmp_path)], capture_output=True, text=True, env={"CUDA_VISIBLE_DEVICES": "",
                           "PATH": "", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "no CUDA device here" in proc.stderr


def test_cpu_rehearsal_writes_the_run(tiny_bundle, tmp_path):
    "The same papermill call the GPU machine makes, with the tiny model and data, on the CPU."
    metrics_file = gq.run_quickstart(tiny_bundle[0], tmp_path/"out", tmp_path/"work", allow_cpu=True,
                                     extra=["-p", "max_length", "64", "-p", "epochs", "1"])
    assert metrics_file == tmp_path/"out"/"quickstart-gpu"/"metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["parameters"]["eval_batch_size"] == 512 and metrics["parameters"]["report_to"] == "none"
    assert metrics["n_eval"] == 48
    assert (tmp_path/"out"/"quickstart-gpu.ipynb").is_file()
