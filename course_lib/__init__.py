"""course_lib: the helper library of the hands-on pruning course.

Foundations at the top level, methods grouped by family below them; imports
point one way, from the families down to the foundations.

=======================  ==========================================================
``profiles``             quick (CI) and full (lecture) budgets, seeds, ``COURSE_SEED``
``data``                 Fashion-MNIST / MNIST found offline first, split, in memory
``models``               LeNet-300-100, LeNet-5, a small VGG with BatchNorm
``devices``              CPU, CUDA or MPS: where tensors live, honest GPU timing
``masks``                attaching masks (torch.nn.utils.parametrize), keeping zeros
``costs``                parameters, non-zeros, MACs, bytes, measured latency
``training/``            the one training loop, its config and its hook phases
``cache``                trained baselines and any experiment's results, on disk
``experiments``          running an experiment over seeds: mean and spread
``claims``               a chapter's claim checked with its margin printed (and logged for a seed sweep)
``pruning/``             selection, procedures, surgery, lottery tickets, at-init scores, slimming, rethinking
``sparse/``              schedules, layer densities (ERK), mask updaters (AGP, SET, RigL)
``plots``                the course's figures
``widgets``              the interactive explorers
``checks``               the check cells of the exercises
``source``               showing a method's core lines from the library itself
=======================  ==========================================================

The exercise generator is build tooling and lives outside the package, in ``tools/``.
"""
