"""--no_duplicates (simcse/no_duplicates.py): global batches without a repeated sentence, seeded, and the
Trainer's steps really see them."""

from __future__ import annotations

import logging

import datasets
import pytest
import torch

from simcse.no_duplicates import NoDuplicatesBatchSampler, no_duplicate_order, sentence_keys


def _nli_like(n_premises: int = 10, per_premise: int = 3) -> datasets.Dataset:
    """Triples whose premise (sentence 0) repeats ``per_premise`` times; hypotheses and negatives are unique."""
    rows = []
    for p in range(n_premises):
        for h in range(per_premise):
            rows.append([[101, p], [201, p, h], [301, p, h]])
    return datasets.Dataset.from_dict({"input_ids": rows})


def _assert_clean(batch: list[int], keys) -> None:
    seen: set[int] = set()
    for i in batch:
        assert seen.isdisjoint(keys[i]), f"example {i} repeats a sentence of its batch"
        seen.update(keys[i])


def test_sentence_keys_compare_token_ids_and_unsup_self_pairs_are_one_sentence():
    data = datasets.Dataset.from_dict({"input_ids": [[[1, 2], [1, 2]], [[1, 2], [3]], [[4], [5]]]})
    keys = sentence_keys(data)
    assert [len(k) for k in keys] == [1, 2, 2]  # the unsupervised copy is the same sentence, not a duplicate
    assert keys[0] <= keys[1] and keys[2].isdisjoint(keys[0] | keys[1])


def test_global_batches_have_no_duplicates_are_seeded_and_count_moves():
    keys = sentence_keys(_nli_like())  # 30 examples, 10 premises x 3
    batches, moved = no_duplicate_order(keys, 8, seed=1, drop_last=True)
    assert len(batches) == 3 and all(len(b) == 8 for b in batches)
    for b in batches:
        _assert_clean(b, keys)
    assert moved > 0  # with 3 copies of each premise among 30, a random batch of 8 almost surely repeats one
    assert no_duplicate_order(keys, 8, seed=1, drop_last=True) == (batches, moved)  # reproducible
    assert no_duplicate_order(keys, 8, seed=2, drop_last=True)[0] != batches
    # Without drop_last every example is placed exactly once, in short clean batches at the end if needed.
    all_batches, _ = no_duplicate_order(keys, 8, seed=1, drop_last=False)
    assert sorted(i for b in all_batches for i in b) == list(range(30))
    for b in all_batches:
        _assert_clean(b, keys)


def test_without_duplicates_the_order_is_the_seeded_shuffle():
    keys = [frozenset([i]) for i in range(10)]
    batches, moved = no_duplicate_order(keys, 4, seed=5, drop_last=False)
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(5)).tolist()
    assert moved == 0 and [i for b in batches for i in b] == expected and [len(b) for b in batches] == [4, 4, 2]


def test_sampler_cuts_global_batches_for_the_ranks_and_reshuffles_per_epoch(caplog):
    data = _nli_like()
    keys = sentence_keys(data)
    sampler = NoDuplicatesBatchSampler(data, batch_size=3, world_size=2, seed=7, drop_last=True)
    with caplog.at_level(logging.INFO, logger="simcse.no_duplicates"):
        first = list(sampler)
    global_batches, _ = no_duplicate_order(keys, 6, seed=7, drop_last=True)
    assert first == [g[s : s + 3] for g in global_batches for s in (0, 3)]  # each global batch cut in 2
    assert len(sampler) == len(first) >= 8 and all(len(b) == 3 for b in first)
    for k in range(0, len(first), 2):  # batches 2k (rank 0) and 2k+1 (rank 1) are one step
        _assert_clean(first[k] + first[k + 1], keys)
    assert f"epoch 0: {sampler.moved} of 30 examples moved" in caplog.text
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_no_possible_batch_is_a_clear_error():
    data = _nli_like(n_premises=3, per_premise=4)  # 3 distinct premises: no batch of 4 without a repeat
    with pytest.raises(ValueError, match="not one batch of 4 examples .* without a repeated sentence"):
        len(NoDuplicatesBatchSampler(data, batch_size=2, world_size=2, drop_last=True))


def test_train_steps_see_no_duplicate_sentence(tiny_bert_dir, tmp_path, monkeypatch, caplog):
    import train
    from simcse.trainer import CLTrainer

    data = tmp_path / "nli.csv"
    lines = ["sent0,sent1,hard_neg"]
    for p in range(8):
        for h in range(3):
            lines.append(f"premise number {p},hypothesis {p} {h} here,negative {p} {h} there")
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen: list[torch.Tensor] = []
    real = CLTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append(inputs["input_ids"].clone())
        return real(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(CLTrainer, "compute_loss", spy)
    with caplog.at_level(logging.INFO, logger="simcse.no_duplicates"):
        train.main([
            "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(data), "--output_dir", str(tmp_path / "o"),
            "--per_device_train_batch_size", "6", "--num_train_epochs", "1", "--no_duplicates", "--pooler_type",
            "cls", "--use_cpu", "--seed", "4", "--report_to", "none", "--disable_tqdm", "true", "--do_train",
            "--save_strategy", "no", "--plot_training", "false", "--dataloader_drop_last",
        ])  # fmt: skip
    assert len(seen) >= 3  # 24 examples (8 premises x 3) in clean batches of 6: at least 3 full ones
    for ids in seen:
        rows = {tuple(r[r != 0].tolist()) for example in ids for r in example}  # distinct sentences (unpadded)
        assert len(rows) == ids.shape[0] * ids.shape[1], "a sentence appears twice in a step"
    assert "--no_duplicates: epoch 0:" in caplog.text and "of 24 examples moved" in caplog.text
