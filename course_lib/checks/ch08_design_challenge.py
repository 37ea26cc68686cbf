"""The checks of exercise 8: the design challenge."""

from __future__ import annotations

import hashlib
import inspect
import json
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

from course_lib import costs
from course_lib.chapters import ch08_capstone
from course_lib.data import DataSplits
from course_lib.fingerprint import code_fingerprint, package_modules
from course_lib.models import LeNet300100, build_model
from course_lib.cache import cache_dir
from course_lib.methods import Ledger, Protocol
from course_lib.profiles import Profile, get_profile, seed_shift
from course_lib.sparse.tracking import MaskTracker
from course_lib.training import evaluate, observing
from course_lib.checks.base import CheckFailed, fail, ok


MAX_DENSITY = 0.05  # at most 5 % of LeNet-300-100's weights may be non-zero
TARGET_SPARSITY = 0.95  # the capstone's column nearest the cap: 95 % of the hidden weights, 5.4 % of all weights


class TestSplitRefused(CheckFailed):
    """A design touched the test split, which is for the final report only."""


class RefusedSplit(TensorDataset):
    """Stands in for the test split while a design is built: reading it stops the check.

    Its length is allowed (the course's cache keys count every split's images); its images and labels are
    not. It guards against a mistake, not against a determined cheat, who could load the data again.
    """

    def __init__(self, size: int) -> None:  # no tensors: there is nothing to read
        self.size = size

    def __len__(self) -> int:
        return self.size

    def _refuse(self, *_: object) -> None:
        raise TestSplitRefused("Your design used the test split (data.test). Choose everything - sparsity, "
                               "method, epochs - on the validation split (data.val): the test split is for the "
                               "final report only, and the check measures it for you.")

    tensors = property(_refuse)  # type: ignore[assignment]
    __getitem__ = _refuse  # type: ignore[assignment]


def _design_key(design: Callable[[DataSplits, int], nn.Module], profile: Profile) -> str:
    """What identifies a design's result: its source (or, without one, its compiled code), the profile, the seeds,
    and the code of the whole course package, since a design may call any of it."""
    try:
        source = inspect.getsource(design)
    except (OSError, TypeError):
        code = getattr(design, "__code__", None)
        source = repr((code.co_code, code.co_consts)) if code is not None else repr(design)
    text = json.dumps([source, profile.name, profile.seeds(), seed_shift(), code_fingerprint(*package_modules())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_path() -> Path:
    return cache_dir() / "design-challenge.json"


def _build(design: Callable[[DataSplits, int], nn.Module], protocol: Protocol, seed: int) -> tuple[nn.Module, float, float]:
    """Run the design with the test split refused; (its network, the share of weights non-zero, its training FLOPs
    relative to one dense run of the capstone's budget), every call of ``train`` observed."""
    data = protocol.data
    with observing(lambda: MaskTracker(snapshot_every=10**9)) as trackers:
        model = design(replace(data, test=RefusedSplit(len(data.test))), seed)  # TestSplitRefused says what was wrong
    reference = costs.layer_costs(build_model("lenet300"))
    table = costs.layer_costs(model) if isinstance(model, LeNet300100) else None
    if table is None or table.weights.tolist() != reference.weights.tolist():
        fail(f"Return the LeNet-300-100 your design pruned, with its 784-300-100-10 layers (masked or with zeros), "
              f"not {type(model).__name__} with other shapes: the 5 % counts LeNet-300-100's "
              f"{int(reference.weights.sum()):,} weights.")
    density = float(table.nonzero.sum() / reference.weights.sum())
    if density > MAX_DENSITY:
        fail(f"seed {seed}: {density:.2%} of the weights are non-zero; the challenge allows {MAX_DENSITY:.0%}. Prune "
             "harder (every weight of net.fc1, net.fc2 and net.fc3 counts: a layer you leave dense counts in full).")
    flops = sum(t.trace.training_flops for t in trackers if t.trace is not None)
    return model, density, flops / Ledger(protocol).dense_budget_flops()


def design_target(profile: Profile | None = None, progress: bool = True) -> dict:
    """The mean test accuracy a design must reach: the capstone's best method at 95 %, minus its spread.

    The capstone (chapter 8) runs every unstructured method under one protocol; its 95 % column is the one nearest
    the challenge's cap (its classifier stays dense, so it keeps 5.4 % of all weights, a little more than the 5 %
    a design may keep). That column is read from the run cache, or run, over the profile's seeds. The method with
    the highest mean test accuracy sets the bar: its mean minus its standard deviation over the seeds. A design
    exactly as good as that method, graded as a mean over the same number of seeds n, then passes unless its mean
    falls more than sqrt(n) of its standard errors short: about 92 % of the time with 2 seeds, 96 % with 3 (for
    normal noise), and a design that is better passes more often. Returns the method, its mean and
    std, the target, and the method's training FLOPs (x one dense run): the cost a design can try to beat.
    """
    profile = profile or get_profile()
    table = ch08_capstone.results(profile, "unstructured", sparsities=[TARGET_SPARSITY], progress=progress)
    per_method = table.groupby("method").agg(mean=("test_acc", "mean"), std=("test_acc", "std"),
                                             train_flops=("train_flops", "mean")).fillna({"std": 0.0})
    best = per_method.loc[per_method["mean"].idxmax()]
    return {"method": best.name, "mean": float(best["mean"]), "std": float(best["std"]),
            "target": float(best["mean"] - best["std"]), "train_flops": float(best["train_flops"]),
            "seeds": len(profile.seeds()), "profile": profile.name}


def describe_target(target: dict) -> str:
    """One line saying where the target comes from."""
    return (f"target {target['target']:.2f} % ({target['profile']} profile): the capstone's best method at "
            f"{TARGET_SPARSITY:.0%} of the hidden weights, {target['method']}, reached {target['mean']:.2f} ± "
            f"{target['std']:.2f} % over {target['seeds']} seeds (mean minus std) for {target['train_flops']:.2f}x "
            "a dense run's training FLOPs")


def try_design(design: Callable[[DataSplits, int], nn.Module], seed: int = 0, profile: Profile | None = None) -> dict:
    """Build the design once and measure it on the VALIDATION split: iterate with this, as often as you like.

    Prints and returns the validation accuracy, the share of weights non-zero and the training FLOPs (relative
    to one dense run of the capstone's budget). The test split is never touched.
    """
    profile = profile or get_profile()
    protocol = ch08_capstone.protocols(profile)["unstructured"]
    model, density, flops = _build(design, protocol, seed)
    result = {"val_acc": evaluate(model, protocol.data.val), "density": density, "train_flops": flops}
    print(f"seed {seed}: validation {result['val_acc']:.2f} % with {density:.2%} of the weights non-zero; "
          f"training cost {flops:.2f}x one dense run of the capstone's budget")
    return result


def check_design_challenge(design: Callable[[DataSplits, int], nn.Module], profile: Profile | None = None) -> float:
    """Grade a design once: its test accuracy over the profile's seeds, its weights and its training cost.

    ``design(data, seed)`` returns a pruned LeNet-300-100 built from ``data.train`` and ``data.val`` (the test
    split is refused). Passing means: a LeNet-300-100 with at most ``MAX_DENSITY`` of its weights non-zero for
    every seed, and a mean test accuracy over the seeds of at least :func:`design_target`.

    Each grading looks at the test set, so an unchanged design is not graded again: its recorded result is
    shown (and judged) instead, with a line that says so. Returns the mean test accuracy.
    """
    profile = profile or get_profile()
    protocol = ch08_capstone.protocols(profile)["unstructured"]
    key, path = _design_key(design, profile), _record_path()
    record = json.loads(path.read_text()) if path.is_file() else {}
    if key in record:
        result = record[key]
        print("This design was graded before, unchanged: its recorded result is shown, not measured again (every "
              "grading is one more look at the test set; change the design, choosing on data.val, to grade it anew).")
    else:
        rows = []
        for seed in profile.seeds():
            model, density, flops = _build(design, protocol, seed)
            rows.append({"test_acc": evaluate(model, protocol.data.test), "density": density, "train_flops": flops})
        result = {"test_acc": [r["test_acc"] for r in rows], "density": max(r["density"] for r in rows),
                  "train_flops": statistics.mean(r["train_flops"] for r in rows), "profile": profile.name,
                  "graded": len([k for k, v in record.items() if v.get("profile") == profile.name]) + 1}
        record[key] = result
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
    accuracy = statistics.mean(result["test_acc"])
    spread = statistics.stdev(result["test_acc"]) if len(result["test_acc"]) > 1 else 0.0
    target = design_target(profile, progress=False)
    print(describe_target(target))
    print(f"graded design #{result['graded']} of profile {profile.name}: test {accuracy:.2f} ± {spread:.2f} % over "
          f"{len(result['test_acc'])} seeds | {result['density']:.2%} of the weights | training "
          f"{result['train_flops']:.2f}x one dense run of the capstone's budget")
    if accuracy < target["target"]:
        fail(f"Mean test accuracy {accuracy:.2f} % over {len(result['test_acc'])} seeds: below the target of "
             f"{target['target']:.2f} %. Compare designs with checks.try_design on data.val: how the layers share the weights "
             "(global ranking, or a dense classifier), when to prune (after training, gradually) and how long to "
             "retrain.")
    ok(f"design accepted: {accuracy:.2f} % mean test accuracy (target {target['target']:.2f} %) with at most "
       f"{result['density']:.2%} of the weights, for {result['train_flops']:.2f}x a dense run's training FLOPs")
    return accuracy
