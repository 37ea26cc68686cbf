"""Chapter 9's experiment pieces: the cached language model, the rescaling, N:M storage, verdicts and the explorer."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from course_lib import cache, costs, widgets
from course_lib.chapters import ch09_one_shot_transformers as chapter
from course_lib.masks import get_masks
from course_lib.models import build_model
from course_lib.pruning import one_shot
from course_lib.text import CharVocab, text_splits
from course_lib.training import NextToken, TrainConfig

DOCUMENTS = [f"Saying number {i}: the quick brown fox jumps over the lazy dog." for i in range(80)]


@pytest.fixture(scope="module")
def tiny():
    """A tiny trained character model, its splits and vocabulary."""
    splits, vocab = text_splits(DOCUMENTS, context=16, seed=0)
    options = {"vocab_size": vocab.size, "context": 16, "width": 16, "depth": 2, "heads": 2}
    config = TrainConfig(epochs=1, steps=30, batch_size=16, lr=3e-3)
    return splits, vocab, options, config


def test_the_language_model_is_trained_once_and_cached_under_its_task_and_shape(tiny, tmp_path):
    splits, vocab, options, config = tiny
    first = cache.trained_baseline("char-transformer", splits, config, tmp_path, progress=False, options=options,
                                   task=NextToken())
    again = cache.trained_baseline("char-transformer", splits, config, tmp_path, progress=False, options=options,
                                   task=NextToken())
    assert not first.from_cache and again.from_cache
    assert first.history.metric_name == "nats_per_token"
    wider = cache.cache_key("char-transformer", splits, config, {**options, "width": 32}, NextToken())
    assert wider != cache.cache_key("char-transformer", splits, config, options, NextToken())
    assert cache.cache_key("char-transformer", splits, config, options, NextToken()) != cache.cache_key(
        "char-transformer", splits, config, options)  # the task is part of the key


def test_a_classifier_key_does_not_change_with_the_new_arguments(tiny):
    splits, *_ = tiny
    config = TrainConfig(epochs=1)
    assert cache.cache_key("lenet300", splits, config) == cache.cache_key("lenet300", splits, config, None,
                                                                          cache.CLASSIFICATION)


def _model(tiny, seed: int = 0):
    splits, vocab, options, config = tiny
    return build_model("char-transformer", seed=seed, **options), splits, vocab


def test_rescaling_keeps_the_function_and_wandas_scores_and_moves_magnitudes(tiny):
    model, splits, _ = _model(tiny)
    with torch.no_grad():  # an untrained LayerNorm is the identity: give it a shift, so the bias is tested too
        for block in model.blocks:
            block.ln1.bias.normal_(0, 0.1)
            block.ln2.bias.normal_(0, 0.1)
    scaled = chapter.rescaled(model, channels=3, factor=100.0, seed=1)
    x = splits.val.tensors[0][:4]
    with torch.no_grad():
        assert torch.allclose(model(x), scaled(x), atol=1e-4)
    batches = [splits.train.tensors[0][:32]]
    layer = "blocks.0.fc1"
    before = one_shot.calibrate(model, [layer], batches)[layer]
    after = one_shot.calibrate(scaled, [layer], batches)[layer]
    weight, weight_scaled = (dict(m.named_modules())[layer].weight for m in (model, scaled))
    assert torch.allclose(one_shot.wanda_scores(weight, before), one_shot.wanda_scores(weight_scaled, after),
                          rtol=1e-3, atol=1e-6)
    moved = (weight_scaled.detach() - weight.detach()).abs().amax(0) > 0
    assert int(moved.sum()) == 3  # three columns shrank, the others are untouched
    assert float(chapter.input_norm_ratios(scaled, batches)[layer]) > 10 * float(
        chapter.input_norm_ratios(model, batches)[layer])


@pytest.mark.parametrize("m", [4, 8])
def test_n_of_m_packing_round_trips_and_is_about_half_the_size(m):
    weight = torch.randn(24, 64)
    scores = weight.abs()
    keep = one_shot.mask_from_scores(scores, nm=(m // 2, m))
    pruned = weight * keep
    packed = chapter.pack_n_of_m(pruned, m)
    assert torch.equal(chapter.unpack_n_of_m(packed), pruned)
    bits = math.ceil(math.log2(m))
    assert packed["positions"].numel() == math.ceil(24 * 64 // 2 * bits / 8)
    assert packed["values"].numel() == 24 * 32


def test_packing_refuses_what_is_not_n_of_m():
    weight = torch.randn(4, 8)
    weight[0, :3] = 0  # row 0's first group keeps one weight, the others keep four
    with pytest.raises(ValueError, match="same number of weights"):
        chapter.pack_n_of_m(weight, 4)
    with pytest.raises(ValueError, match="groups of m = 3"):
        chapter.pack_n_of_m(torch.randn(4, 8), 3)


def test_a_masked_file_is_dense_sized_and_2_4_packing_saves_about_half(tiny):
    model, splits, _ = _model(tiny)
    batches = [splits.train.tensors[0][:32]]
    pruned = chapter.pruned_copy(model, "magnitude", chapter.Pattern(nm=(2, 4)), batches)
    sizes = chapter.saved_sizes(pruned, 4)
    dense = costs.saved_size(model.state_dict())
    assert abs(sizes["dense file (zeros stored)"] / dense - 1) < 0.02
    packed = next(v for k, v in sizes.items() if k.startswith("N:M packed"))
    assert packed < sizes["dense file (zeros stored)"] < sizes["CSR (64-bit indices)"]  # 64-bit indices at 50 %: larger
    weight = dict(pruned.named_modules())["blocks.0.fc1"].weight.detach()
    csr = chapter.compact_csr(weight)
    assert torch.equal(csr.to_dense(), weight) and csr.col_indices().untyped_storage().nbytes() == 8 * int((weight != 0).sum())


def test_patterns_are_named_as_tables_print_them():
    assert chapter.Pattern(sparsity=0.5).label == "50 %"
    assert chapter.Pattern(nm=(2, 4)).label == "2:4"
    assert chapter.Pattern(nm=(2, 4)).share_pruned == 0.5
    assert [p.label for p in chapter.patterns(chapter.BUDGETS["quick"])][-2:] == ["2:4", "4:8"]


def test_verdicts_name_the_lower_perplexity_only_when_every_seed_agrees_beyond_the_floor():
    table = pd.DataFrame({"seed": [0, 0, 1, 1], "method": ["A", "B"] * 2, "pattern": ["2:4"] * 4,
                          "perplexity": [10.0, 11.0, 10.0, 10.5]})
    excess = chapter.relative_excess(table, "A", "B", "2:4")
    assert excess.round(6).tolist() == [10.0, 5.0]
    assert "A lower on all 2 seeds" in chapter.perplexity_verdict(excess, "A", "B", noise=1.0)
    assert "not separated" in chapter.perplexity_verdict(excess, "A", "B", noise=7.0)
    with pytest.raises(ValueError, match="no rows of 'A' and 'C'"):
        chapter.relative_excess(table, "A", "C", "2:4")


def test_the_paired_standard_error_is_zero_for_a_model_against_itself(tiny):
    model, splits, _ = _model(tiny)
    windows = chapter.TensorDataset(*(t[:20] for t in splits.val.tensors))
    nats = chapter.window_nats(model, windows)
    assert chapter.paired_standard_error(nats, nats) == 0.0
    assert math.isclose(math.exp(float(chapter.window_nats(model, windows).mean())),
                        chapter.perplexity(model, windows), rel_tol=1e-5)


def test_the_explorer_answers_a_move_with_the_settings_perplexity_and_a_seeded_continuation(tiny):
    model, splits, vocab = _model(tiny)
    batches = [splits.train.tensors[0][:32]]
    models = chapter.explorer_models(model, batches, sparsities=[0.5], progress=False)
    assert set(models) == {(name, s) for name in chapter.NAMES.values() for s in ("0 %", "50 %", "2:4")}
    assert not any(get_masks(m) for m in models.values())  # masks folded in: plain weights, faster to run
    windows = chapter.TensorDataset(*(t[:8] for t in splits.val.tensors))
    box = widgets.one_shot_explorer(models, vocab, windows, prompt="the ", length=10)
    prompt, method, setting, caption, continuation, _ = box.children
    first = (caption.value, continuation.value)
    setting.value = "2:4"
    assert "at 2:4" in caption.value and caption.value != first[0]
    setting.value = "0 %"
    assert (caption.value, continuation.value) == first  # seeded: the same setting gives the same text
    prompt.value = "\u2603"  # a character the model never saw: said in the output, not raised
    assert "outside the model&#x27;s vocabulary" in continuation.value


def test_the_explorer_needs_every_method_at_every_setting(tiny):
    model, splits, vocab = _model(tiny)
    with pytest.raises(ValueError, match="missing"):
        widgets.one_shot_explorer({("A", "0 %"): model, ("B", "50 %"): model}, vocab, splits.val)


def test_bad_calibration_and_rescaling_requests_are_named(tiny):
    model, splits, _ = _model(tiny)
    with pytest.raises(ValueError, match="between 1 and"):
        chapter.calibration_batches(splits, 0, seed=0)
    with pytest.raises(ValueError, match="positive factor"):
        chapter.rescaled(model, channels=2, factor=0.0)
    assert CharVocab  # the vocabulary type the chapter passes around


def test_the_layer_error_is_read_only_for_pairs_that_perplexity_separates():
    rows = []
    for seed in (0, 1):
        for method, ppl, error in (("magnitude", 12.0, 0.3), ("Wanda", 12.01 + seed * 0.1, 0.2), ("SparseGPT", 10.0, 0.1)):
            rows.append({"seed": seed, "method": method, "pattern": "2:4", "perplexity": ppl, "layer": error})
    line = chapter.error_against_perplexity(pd.DataFrame(rows), ["layer"], "2:4", noise=1.0)
    assert line.startswith("2:4: perplexity separates 2 of 3 pairs; the layer error orders 2 of them the same way")
    assert "not separated by perplexity: magnitude/Wanda" in line


def test_the_noise_floor_of_a_pattern_is_twice_its_largest_paired_standard_error():
    table = pd.DataFrame({"pattern": ["dense", "50 %", "50 %", "2:4"], "paired se": [float("nan"), 0.2, 0.3, 0.5]})
    assert chapter.noise_floors(table).to_dict() == {"50 %": 0.6, "2:4": 1.0}
    with pytest.raises(ValueError, match="paired se"):
        chapter.noise_floors(table.drop(columns="paired se"))
