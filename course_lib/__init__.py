"""course_lib: the helper library of the hands-on pruning course.

The library is built in four layers. A module may import from its own layer's
lower rows and from the layers below, never from above; ``pyproject.toml``
writes the layers down as import contracts and ``make test`` checks them
(``tests/test_architecture.py``, with import-linter).

**Teaching** (uses everything below; nothing imports it)

=======================  ==========================================================
``checks``               the check cells of the exercises
``widgets``              the interactive explorers
``plots``                the course's figures
``source``               showing a method's core lines from the library itself
=======================  ==========================================================

**Chapter experiments** (``chapters/``: one module per chapter)

Each chapter's runs, tables and budget (``BUDGETS``, quick and full), e.g.
``chapters.ch06_sparse_training``. A notebook imports its chapter as ``chapter``.

**Methods**

=======================  ==========================================================
``methods``              the registry: every method as one named runner on one protocol, and the run record
``dpp/``                 dynamic probabilistic pruning: Gumbel-top-k masks, the DPP hook, storage
``pruning/``             selection, procedures, surgery, lottery tickets, at-init scores, slimming, Scratch-B,
                         one shot from calibration data (magnitude, Wanda, SparseGPT)
``sparse/``              schedules, layer densities (ERK), mask updaters (AGP, SET, RigL), FLOPs
=======================  ==========================================================

(top to bottom: DPP builds on pruning's selection rules, pruning on sparse's AGP and schedules.)

**Foundations**

=======================  ==========================================================
``experiments``          running an experiment over seeds through the cache: mean and spread
``cache``                trained baselines (the one cached dense trainer) and any result, on disk
``training/``            the one training loop, its config, tasks (classification, next token) and hooks
``masks``                attaching masks (torch.nn.utils.parametrize), keeping zeros
``claims``               a chapter's claim checked with its margin printed (and logged for a seed sweep)
``quantization``         fake quantization of weights
``costs``                parameters, non-zeros, MACs, bytes, measured latency
``text``                 plain English text found offline (Debian's fortunes), characters as tokens, sampling
``models`` / ``data``    the course's networks (a character transformer too); Fashion-MNIST / MNIST found offline first, split by sizes
``devices``              CPU, CUDA or MPS: where tensors live, honest GPU timing
``profiles``             quick (CI) and full (lecture) profiles, ``COURSE_SEED``, ``derive_seed``
``fingerprint``          a hash of the code that computes a result (part of every cache key)
=======================  ==========================================================

**Where new things go.** A new *method* goes into its family (a score in
``pruning/selection.py``, an updater in ``sparse/updaters.py``, ...) and
registers one runner in :mod:`course_lib.methods`; the capstone then runs it
with every other method. A runner prunes and trains, passing
``ledger.hooks()`` to every training call so that its compute is counted::

    @register("magnitude, no fine-tuning", "unstructured", chapter=1, about="one global cut of the dense network")
    def _magnitude_only(protocol: Protocol, sparsity: float, seed: int, ledger: Ledger) -> nn.Module:
        model = dense_trained(protocol, protocol.epochs, seed, ledger)
        apply_masks(model, magnitude("global", exclude=LENET_CLASSIFIER)(model, sparsity))
        return model

A new *chapter* gets a module in ``chapters/`` with its ``Budget`` per
profile and the functions that build its tables; its cached runs are keyed by
their settings and, through :mod:`course_lib.fingerprint`, by the code of the
chapter module and everything it imports.

The exercise generator is build tooling and lives outside the package, in ``tools/``.
"""
