# SPDX-License-Identifier: Apache-2.0
"""Shards: the teacher-rollout generator, the streaming reader's order and resumable position, rank slices,
and bad files (truncated, not a shard, inconsistent, NaN)."""
import pytest
import torch

from comfyui_tmd.tmd_core import generate_teacher
from comfyui_tmd.training.errors import ShardError
from comfyui_tmd.training.shards import ShardReader, write_shard

from factories import random_wan
from training_factories import SHARD_LATENT, TEXT_LEN, random_shard as _shard


def test_generated_shards_hold_the_teachers_samples(shard_dir, prompt_embeddings):
    context, negative = prompt_embeddings
    reader = ShardReader([str(shard_dir / "*.safetensors")], batch_size=8, seed=0)
    assert reader.rows == [4, 4]
    with torch.no_grad():
        expected = generate_teacher(random_wan(), context[5:6], negative, (1, *SHARD_LATENT), seed=5, steps=4, cfg=5.0,
                                    shift=3.0, disable=True)
    item = reader._row(1, 1)  # prompt 5 is row 1 of the second shard
    torch.testing.assert_close(item["latents"], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(item["context"], context[5], rtol=0, atol=0)
    torch.testing.assert_close(item["negative_context"], negative[0], rtol=0, atol=0)


def test_order_is_a_permutation_per_epoch_and_the_position_resumes_exactly(tmp_path):
    for i in range(3):
        _shard(tmp_path / f"s{i}.safetensors", n=4, seed=i)
    reader = ShardReader([str(tmp_path / "*.safetensors")], batch_size=4, seed=3)
    epoch = [reader.next_batch()["latents"] for _ in range(3)]
    seen = torch.cat(epoch).flatten(1)
    assert len({tuple(row[:4].tolist()) for row in seen}) == 12  # every example once per epoch
    state = reader.state_dict()
    ahead = [reader.next_batch()["latents"] for _ in range(4)]  # crosses into epoch 2
    resumed = ShardReader([str(tmp_path / "*.safetensors")], batch_size=4, seed=3)
    resumed.load_state_dict(state)
    for a, b in zip(ahead, (resumed.next_batch()["latents"] for _ in range(4)), strict=True):
        assert torch.equal(a, b)
    other_seed = ShardReader([str(tmp_path / "*.safetensors")], batch_size=4, seed=4)
    with pytest.raises(ShardError, match="seed"):
        other_seed.load_state_dict(state)


def test_ranks_take_disjoint_slices_of_one_global_batch(tmp_path):
    _shard(tmp_path / "a.safetensors", n=8)
    files = [str(tmp_path / "a.safetensors")]
    whole = ShardReader(files, batch_size=4, seed=1).next_batch()["latents"]
    parts = [ShardReader(files, batch_size=4, rank=r, world=2, seed=1).next_batch()["latents"] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(ShardError, match="does not split evenly over 3"):
        ShardReader([str(tmp_path / "a.safetensors")], batch_size=4, world=3)


def test_truncated_shard_is_refused(tmp_path):
    path = _shard(tmp_path / "a.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="truncated"):
        ShardReader([str(path)], batch_size=2)


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(torch.randint(0, 255, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ShardError, match="garbage.safetensors"):
        ShardReader([str(garbage)], batch_size=2)
    from comfyui_tmd.tmd_core.safe_files import write_safetensors

    foreign = write_safetensors({"latents": torch.randn(2, 16, 1, 2, 2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ShardError, match="not a training shard"):
        ShardReader([str(foreign)], batch_size=2)
    with pytest.raises(ShardError, match="no files|cannot be read"):
        ShardReader([str(tmp_path / "missing-*.safetensors")], batch_size=2)


def test_inconsistent_shards_and_config_mismatch_are_named(tmp_path):
    _shard(tmp_path / "a.safetensors")
    _shard(tmp_path / "b.safetensors", latent=(16, 1, 4, 6))
    with pytest.raises(ShardError, match="b.safetensors holds latents"):
        ShardReader([str(tmp_path / "*.safetensors")], batch_size=2)
    with pytest.raises(ShardError, match="the config expects 9"):
        ShardReader([str(tmp_path / "a.safetensors")], batch_size=2, text_len=9)
    with pytest.raises(ShardError, match="fewer than one global batch"):
        ShardReader([str(tmp_path / "a.safetensors")], batch_size=8)


def test_non_finite_rows_are_reported_with_shard_and_row(tmp_path):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, *SHARD_LATENT, generator=g)
    latents[1, 0, 0, 0, 0] = float("nan")
    write_shard(tmp_path / "nan.safetensors", latents, torch.randn(2, TEXT_LEN, 4096, generator=g),
                torch.randn(1, TEXT_LEN, 4096, generator=g))
    reader = ShardReader([str(tmp_path / "nan.safetensors")], batch_size=2)
    with pytest.raises(ShardError, match="nan.safetensors row 1 has NaN"):
        reader.next_batch()
