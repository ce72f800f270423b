"""The app's Hydra configs, ``pkg://lightning_cyclic.conf``: ``train.yaml`` and its groups.

Hydra imports this package when it reads a config from it, which registers the ``lc.*`` resolvers the configs
use (``${lc.unique:}`` in the run folders, ``${lc.around:...}`` for ``hparams_search=fine``): an app of your
own that composes these configs needs no set-up of its own.
"""

from lightning_cyclic.sweeps import register_resolvers

register_resolvers()
