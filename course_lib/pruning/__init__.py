"""Pruning a network: which weights or units to remove, when, and what to do after.

=================  ==============================================================
``selection``      criteria, scopes and structures that turn scores into masks
``procedures``     prune-and-retrain recipes (train with masks, one-shot, iterative, AGP), sensitivity scan
``surgery``        removing dead neurons/filters to get a smaller dense network
``lottery``        iterative magnitude pruning with rewinding, controls, retraining
``at_init``        pruning at initialization: SNIP, GraSP, SynFlow
``slimming``       network slimming: L1 on BatchNorm scales, one global threshold, a floor, ``slim``
``rethinking``     Scratch-E and Scratch-B: re-initialising a pruned architecture, its compute budget
``one_shot``       pruning a trained model once from calibration inputs: magnitude, Wanda, SparseGPT, N:M
=================  ==============================================================

Import the module you need: ``from course_lib.pruning import selection, procedures``.
Dependencies point one way: ``selection`` uses only the foundations (masks,
costs, data); ``surgery`` adds selection's rule for which BatchNorm belongs to
a layer (``following_batchnorm``); ``procedures`` (with AGP from
:mod:`course_lib.sparse`), ``lottery``, ``at_init``, ``slimming`` and
``rethinking`` build on them and on :mod:`course_lib.training`; ``one_shot`` needs only the masks. The chapters'
experiments that use these methods live in :mod:`course_lib.chapters`.
"""
