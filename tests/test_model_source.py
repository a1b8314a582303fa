"""--sdperf-model values: folders are vetted, nothing in them is executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_sdperf.models.source import ModelError, resolve_model


def folder(tmp_path: Path, **files: bytes) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"]}))
    (root / "unet").mkdir()
    for name, data in files.items():
        (root / "unet" / name.replace("_", ".")).write_bytes(data)
    return root


def test_safetensors_folder_is_accepted_with_a_content_key(tmp_path: Path) -> None:
    root = folder(tmp_path, model_safetensors=b"abc")
    ref = resolve_model(str(root), tmp_path / "cache")
    assert ref.kind == "diffusers" and ref.key.startswith("model-")
    (root / "unet" / "model.safetensors").write_bytes(b"abd")
    assert resolve_model(str(root), tmp_path / "cache").key != ref.key


def test_pickle_weights_are_refused_unless_allowed(tmp_path: Path) -> None:
    root = folder(tmp_path, model_bin=b"pickle")
    with pytest.raises(ModelError, match=r"pickle files \(unet/model.bin\).*--sdperf-allow-pickle"):
        resolve_model(str(root), tmp_path / "cache")
    assert resolve_model(str(root), tmp_path / "cache", allow_pickle=True).allow_pickle


def test_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    root = folder(tmp_path, model_safetensors=b"abc")
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    (root / "unet" / "link.safetensors").symlink_to(outside)
    with pytest.raises(ModelError, match="symlink to .*outside the model folder"):
        resolve_model(str(root), tmp_path / "cache")


def test_missing_component_folder(tmp_path: Path) -> None:
    root = folder(tmp_path, model_safetensors=b"abc")
    index = json.loads((root / "model_index.json").read_text())
    index["vae"] = ["diffusers", "AutoencoderKL"]
    (root / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match=r"component\(s\) \['vae'\].*missing"):
        resolve_model(str(root), tmp_path / "cache")


@pytest.mark.parametrize("value, message", [
    ("no/such/dir/x", "no such folder, and not a hub id"),
    ("./nothing", "no such folder"),
])
def test_unknown_values(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model(value, tmp_path)


def test_hub_id_is_taken_as_such(tmp_path: Path) -> None:
    ref = resolve_model("stabilityai/sd-turbo", tmp_path)
    assert (ref.kind, ref.location) == ("hub", "stabilityai/sd-turbo")


def test_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model_index.json"):
        resolve_model(str(tmp_path), tmp_path)


def test_building_the_tiny_model_leaves_the_sessions_environment_alone(tmp_path: Path) -> None:
    """Built in a subprocess: importing torch in the session's process would set variables
    (KMP_INIT_AT_FORK, ...) that make every worker's environment differ from the fork server's.
    Checked in a fresh interpreter, where nothing has imported torch yet."""
    import subprocess
    import sys

    script = ("import json, os, sys; from pathlib import Path; before = dict(os.environ); "
              "from pytest_sdperf.models.source import resolve_model; "
              "ref = resolve_model('tiny', Path(sys.argv[1])); "
              "print(json.dumps({'changed': sorted(k for k in set(os.environ) | set(before) "
              "if os.environ.get(k) != before.get(k)), 'torch': 'torch' in sys.modules, "
              "'location': ref.location}))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["changed"] == [] and not found["torch"]
    assert (Path(found["location"]) / "model_index.json").is_file()
