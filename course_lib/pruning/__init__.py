"""Pruning a network: which weights or units to remove, when, and what to do after.

=================  ==============================================================
``selection``      criteria, scopes and structures that turn scores into masks
``procedures``     prune-and-retrain recipes, sensitivity scan, structured sweep
``surgery``        removing dead neurons/filters to get a smaller dense network
``lottery``        iterative magnitude pruning with rewinding, controls, retraining
``at_init``        pruning at initialization: SNIP, GraSP, SynFlow
``slimming``       network slimming: L1 on BatchNorm scales, one global threshold, a floor
``rethinking``     fine-tuned vs Scratch-E vs Scratch-B, and chapter 5's experiments
=================  ==============================================================

Import the module you need: ``from course_lib.pruning import selection, procedures``.
Dependencies point one way: ``selection`` uses only the foundations (masks,
costs, data); ``surgery`` adds selection's rule for which BatchNorm belongs to
a layer (``following_batchnorm``); ``procedures``, ``lottery``, ``at_init`` and
``slimming`` build on them and on :mod:`course_lib.training`; ``rethinking`` on all of them.
"""
