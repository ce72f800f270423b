"""Puts lightning_cyclic's configs on the search path of every Hydra app in this environment.

Hydra asks each ``SearchPathPlugin`` for its config folders. This one appends ``pkg://lightning_cyclic.conf``
last, so an app's own configs always come first and ours fill in: your ``conf/model/my_net.yaml`` sits beside
our ``model/mlp.yaml``, and your primary config can start from ours (``defaults: [train, _self_]``). It amounts
to ``hydra.searchpath: [pkg://lightning_cyclic.conf]`` in your primary config, which does the same where this
plugin is not installed.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PATH = "pkg://lightning_cyclic.conf"


class LightningCyclicSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == PATH for element in search_path.get_path()):
            search_path.append(provider="lightning-cyclic", path=PATH)
