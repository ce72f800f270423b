"""lightning_cyclic's Hydra plugins: its configs on the search path, and a resumable Optuna sweeper.

Hydra imports every module of the ``hydra_plugins`` namespace package at start-up; these import nothing heavy.
"""
