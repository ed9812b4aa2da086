# SPDX-License-Identifier: Apache-2.0
"""The checkpoint format: round trip, metadata validation, and a one-sentence error for every bad file."""
import json
import random
import struct

import pytest
import torch

from comfyui_tmd.tmd_core import (CheckpointError, FlowHeadMeta, FlowHeadSpec, TMDStudent, WanConfig, generate_tmd,
                                  load_flow_head, load_student, read_flow_head, save_flow_head, save_student)
from comfyui_tmd.tmd_core.safe_files import write_safetensors

from factories import LATENT, perturb_extras, random_wan


def meta_for(student, **training):
    return FlowHeadMeta.describe_model(student.wan, student.extras.spec, **training)


def saved_head(tmp_path, student, name="head.safetensors"):
    return save_flow_head(student, tmp_path / name, meta_for(student, outer_steps=2, inner_steps=2,
                                                                 trained_from="test teacher"))


def test_student_round_trip_samples_identically(tmp_path, student, inputs):
    _, _, context = inputs
    student = perturb_extras(student)
    meta = meta_for(student, outer_steps=1, inner_steps=4, trained_from="toy teacher, stage 2 step 800")
    wan_path, head_path = save_student(student, tmp_path / "student.safetensors", tmp_path / "student_head.safetensors",
                                       meta)
    loaded, loaded_meta = load_student(wan_path, head_path)
    assert loaded_meta == meta
    assert loaded_meta.inner_steps == 4 and loaded_meta.trained_from.startswith("toy teacher")
    with torch.no_grad():
        a = generate_tmd(student, context, LATENT, seed=4)
        b = generate_tmd(loaded, context, LATENT, seed=4)
    assert torch.equal(a, b)


def test_metadata_is_plain_json_a_user_can_read(tmp_path, student):
    from safetensors import safe_open
    path = saved_head(tmp_path, student)
    with safe_open(path, "pt") as f:
        fields = json.loads(f.metadata()["tmd"])
    assert fields["dim"] == 64 and fields["num_layers"] == 6 and fields["head_blocks"] == 2
    assert fields["fusion"] == "gated" and fields["format_version"] == 1 and fields["inner_gamma"] == 10.0


def test_concat_head_round_trip(tmp_path, wan, inputs):
    x, t, context = inputs
    student = perturb_extras(TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=3, fusion="concat")))
    path = saved_head(tmp_path, student)
    loaded, meta = load_flow_head(random_wan(), path)
    assert meta.fusion == "concat" and loaded.head_blocks == 3
    for a, b in zip(student.extras.state_dict().values(), loaded.extras.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("config, message", [
    (WanConfig(dim=64, ffn_dim=96, num_heads=2, num_layers=8),
     "flow head is for a 6-layer dim-64 Wan, the model is 8-layer dim-64"),
    (WanConfig(dim=128, ffn_dim=96, num_heads=2, num_layers=6),
     "flow head is for a 6-layer dim-64 Wan, the model is 6-layer dim-128"),
    (WanConfig(dim=64, ffn_dim=96, num_heads=4, num_layers=6), "for a Wan with 2 attention heads, the model has 4"),
    (WanConfig(dim=64, ffn_dim=96, num_heads=2, num_layers=6, in_dim=36),
     "16 in / 16 out latent channels, the model has 36 / 16"),
])
def test_head_for_another_model_is_refused(tmp_path, student, config, message):
    path = saved_head(tmp_path, student)
    with pytest.raises(CheckpointError, match=message):
        load_flow_head(random_wan(config), path)


def test_missing_and_unknown_head_keys(tmp_path, student, wan):
    path = saved_head(tmp_path, student)
    tensors, meta = read_flow_head(path)
    del tensors["fusion.out.weight"]
    write_safetensors(tensors, tmp_path / "missing.safetensors", meta.to_metadata())
    with pytest.raises(CheckpointError, match="missing.safetensors is missing fusion.out.weight"):
        load_flow_head(wan, tmp_path / "missing.safetensors")
    tensors, _ = read_flow_head(path)
    write_safetensors({**tensors, "fusion.extra": torch.randn(2)}, tmp_path / "extra.safetensors", meta.to_metadata())
    with pytest.raises(CheckpointError, match="unknown keys fusion.extra"):
        load_flow_head(wan, tmp_path / "extra.safetensors")


def test_metadata_saying_another_fusion_is_caught(tmp_path, student, wan):
    tensors, meta = read_flow_head(saved_head(tmp_path, student))
    lying = json.loads(meta.to_metadata()["tmd"])
    lying["fusion"] = "concat"
    write_safetensors(tensors, tmp_path / "lying.safetensors", {"tmd": json.dumps(lying)})
    with pytest.raises(CheckpointError, match="for a concat-fusion head"):
        load_flow_head(wan, tmp_path / "lying.safetensors")


def test_pickle_files_are_never_unpickled(tmp_path, wan):
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle
    (tmp_path / "head.pkl").write_bytes(pickle.dumps(Boom(), protocol=4))
    torch.save({"fusion.out.weight": torch.randn(2)}, tmp_path / "head.pt")
    for name in ("head.pkl", "head.pt"):
        with pytest.raises(CheckpointError, match=f"{name} is a pickle/PyTorch file, not safetensors"):
            load_flow_head(wan, tmp_path / name)
    assert not marker.exists()


def test_random_bytes_missing_and_empty_files(tmp_path, wan):
    noise = bytearray(random.Random(0).randbytes(4096))
    noise[8] = ord("x")
    (tmp_path / "noise.safetensors").write_bytes(bytes(noise))
    with pytest.raises(CheckpointError, match="noise.safetensors is not a safetensors file"):
        load_flow_head(wan, tmp_path / "noise.safetensors")
    noise[8] = ord("{")  # looks like a header, promises more than the file holds
    (tmp_path / "noise.safetensors").write_bytes(bytes(noise))
    with pytest.raises(CheckpointError, match="noise.safetensors is truncated or damaged"):
        load_flow_head(wan, tmp_path / "noise.safetensors")
    (tmp_path / "text.safetensors").write_bytes(struct.pack("<Q", 9) + b"{not json")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        load_flow_head(wan, tmp_path / "text.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="too short to be a safetensors file"):
        load_flow_head(wan, tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="no file at"):
        load_flow_head(wan, tmp_path / "absent.safetensors")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(tmp_path, student, wan, keep):
    path = saved_head(tmp_path, student)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="cut.safetensors is truncated"):
        load_flow_head(wan, tmp_path / "cut.safetensors")


def test_a_plain_wan_file_is_not_a_flow_head(tmp_path, wan):
    from comfyui_tmd.tmd_core import save_wan
    path = save_wan(wan, tmp_path / "wan.safetensors")
    with pytest.raises(CheckpointError, match="is not a TMD flow-head file"):
        load_flow_head(wan, path)


@pytest.mark.parametrize("field, value, match", [
    ("head_blocks", 6, "between 1 and 5"),
    ("head_blocks", 0, "between 1 and 5"),
    ("outer_steps", 0, "trained outer steps M"),
    ("inner_steps", -2, "trained inner steps N"),
    ("inner_gamma", 0.2, "inner γ"),
    ("inner_form", "y0", "inner form 'y0' is unknown; expected one of y1, ys"),
    ("format_version", 99, "format 99; this version of the pack reads up to 1"),
])
def test_impossible_metadata(tmp_path, student, wan, field, value, match):
    tensors, meta = read_flow_head(saved_head(tmp_path, student))
    fields = json.loads(meta.to_metadata()["tmd"])
    fields[field] = value
    write_safetensors(tensors, tmp_path / "bad.safetensors", {"tmd": json.dumps(fields)})
    with pytest.raises(Exception, match=match):
        load_flow_head(wan, tmp_path / "bad.safetensors")


def test_inner_form_travels_in_the_metadata_and_old_files_read_as_y1(tmp_path, student, wan, inputs):
    """A head saved with "ys" loads as "ys" and load_student hands it to the sampler; a file written before the
    field existed is today's u = y1 − head."""
    _, _, context = inputs
    student = perturb_extras(student)
    meta = meta_for(student, inner_form="ys")
    wan_path, head_path = save_student(student, tmp_path / "s.safetensors", tmp_path / "s_head.safetensors", meta)
    loaded, loaded_meta = load_student(wan_path, head_path)
    assert loaded_meta.inner_form == "ys"
    with torch.no_grad():
        ys = generate_tmd(loaded, context, LATENT, seed=4, inner_form=loaded_meta.inner_form)
        y1 = generate_tmd(loaded, context, LATENT, seed=4)
    assert not torch.allclose(ys, y1)
    tensors, _ = read_flow_head(head_path)
    fields = json.loads(meta.to_metadata()["tmd"])
    del fields["inner_form"]
    write_safetensors(tensors, tmp_path / "old.safetensors", {"tmd": json.dumps(fields)})
    assert read_flow_head(tmp_path / "old.safetensors")[1].inner_form == "y1"


def test_unknown_metadata_field_is_reported(tmp_path, student, wan):
    tensors, meta = read_flow_head(saved_head(tmp_path, student))
    fields = {**json.loads(meta.to_metadata()["tmd"]), "surprise": 1}
    write_safetensors(tensors, tmp_path / "odd.safetensors", {"tmd": json.dumps(fields)})
    with pytest.raises(CheckpointError, match="unreadable TMD metadata.*surprise"):
        load_flow_head(wan, tmp_path / "odd.safetensors")


def test_atomic_write_keeps_the_old_file_when_saving_fails(tmp_path, student):
    path = saved_head(tmp_path, student)
    before = path.read_bytes()
    with pytest.raises(AttributeError):  # a str has no tensor attributes
        write_safetensors({"bad": "not a tensor"}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.safetensors"]  # no temporary left behind
