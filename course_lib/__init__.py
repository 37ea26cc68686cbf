"""course_lib: the helper library of the hands-on pruning course.

One module per concept; the notebooks import them by name:

=================  ==============================================================
``profiles``       quick (CI) and full (lecture) budgets, chosen by COURSE_PROFILE
``data``           Fashion-MNIST / MNIST found offline first, split, in memory
``models``         LeNet-300-100, LeNet-5, a small VGG with BatchNorm
``training``       seeded train / evaluate with progress bars and step hooks
``cache``          trained dense baselines kept on disk and shared
``metrics``        parameters, non-zeros, MACs, bytes, measured latency
``masks``          attaching masks (torch.nn.utils.parametrize), keeping zeros
``pruning``        criteria, scopes and structures that turn scores into masks
``schedules``      one-shot, iterative and gradual (AGP) sparsity schedules
``procedures``     prune-and-retrain recipes, sensitivity scan, structured sweep
``surgery``        removing dead neurons/filters to get a smaller dense network
``lottery``        iterative magnitude pruning with rewinding, controls, retraining
``init_scores``    pruning at initialization: SNIP, GraSP, SynFlow
``plots``          the course's figures
``widgets``        the interactive explorers
``checks``         the check cells of the exercises
``exercises``      generating exercises/ from solutions/
=================  ==============================================================
"""
