"""Check cells of the exercises: test a student's function against the library's own and say what differs.

Each ``check_*`` function calls the student's function on small hand-made and
random cases, compares with the reference implementation in ``course_lib``
(never a copy), and either prints a one-line success or raises an
``AssertionError`` whose message says what was expected, what came back, and
the most likely mistake.

One module per exercise (``ch00_cost`` ... ``ch09_one_shot``); a notebook
imports the package and calls ``checks.check_...``.
"""

from course_lib.checks.base import CheckFailed
from course_lib.checks.ch00_cost import check_macs, check_median_latency, check_break_even
from course_lib.checks.ch01_magnitude import (check_local_magnitude_mask, check_global_magnitude_masks,
                                              check_prune_trained, check_agp)
from course_lib.checks.ch02_structure import check_l1_ranking, check_remove_filters
from course_lib.checks.ch03_lottery import check_imp_round, check_random_reinit
from course_lib.checks.ch04_at_init import check_snip, check_synflow_scores, check_iterative_synflow, check_collapse
from course_lib.checks.ch05_rethinking import check_scratch_b_config, check_l1_proximal, check_keep_channels
from course_lib.checks.ch06_sparse_training import (check_cosine_drop_fraction, check_drop_and_grow,
                                                    check_erk_densities, check_rigl_update)
from course_lib.checks.ch07_dpp import check_gumbel_top_k, check_soft_top_k, check_is_n_m
from course_lib.checks.ch09_one_shot import check_obs_step, check_refit, check_wanda_2_4, check_wanda_mask
from course_lib.checks.ch08_design_challenge import (MAX_DENSITY, TARGET_SPARSITY, TestSplitRefused, RefusedSplit,
                                                     check_design_challenge, describe_target, design_target,
                                                     try_design)

__all__ = ["MAX_DENSITY", "TARGET_SPARSITY", "check_agp", "check_break_even", "check_collapse",
           "check_cosine_drop_fraction", "check_design_challenge", "check_drop_and_grow", "check_erk_densities",
           "check_global_magnitude_masks", "check_gumbel_top_k", "check_imp_round", "check_is_n_m",
           "check_iterative_synflow", "check_keep_channels", "check_l1_proximal", "check_l1_ranking",
           "check_local_magnitude_mask", "check_macs", "check_median_latency", "check_obs_step",
           "check_prune_trained", "check_random_reinit", "check_refit", "check_remove_filters",
           "check_rigl_update", "check_scratch_b_config", "check_snip", "check_soft_top_k", "check_synflow_scores",
           "check_wanda_2_4", "check_wanda_mask", "CheckFailed", "describe_target", "design_target",
           "RefusedSplit", "TestSplitRefused", "try_design"]
