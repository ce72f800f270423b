"""Take everything a short experiment could change, and put it back exactly.

Used by the LR range test: model parameters and buffers (non-persistent ones
too), torchmetrics states, gradients, train/eval modes, every optimizer's
state and param groups, lr schedulers, other objects with a ``state_dict``
(the precision plugin's GradScaler), the RNGs (python, numpy, torch, CUDA) and
the ``torch.Generator`` of each DataLoader and sampler given (see
:func:`loader_generators`). Copies live on the CPU, never in a file.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_cyclic import _compat


def to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor detached and cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def _metric_states(model: nn.Module) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    try:
        from torchmetrics import Metric
    except ImportError:  # pragma: no cover - torchmetrics is a dependency
        return {}
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, Metric):
            states = {attr: to_cpu(getattr(module, attr)) for attr in _compat.metric_state_names(module)}
            out[name] = (states, to_cpu(_compat.metric_counters(module)))
    return out


def dataloaders(*collections: Any) -> list[Any]:
    """The loaders in ``collections`` (a loader, ``None``, or lists, tuples and dicts of them), each once."""
    out: dict[int, Any] = {}

    def visit(obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, dict):
            obj = list(obj.values())
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item)
        else:
            out.setdefault(id(obj), obj)

    for collection in collections:
        visit(collection)
    return list(out.values())


_RANDOM_PARTS = ("generator", "sampler", "batch_sampler")


def loader_generators(loaders: list[Any]) -> list[torch.Generator]:
    """Every ``torch.Generator`` the loaders draw from, each once: ``loader.generator`` (worker seeds, and the
    default sampler's shuffle), ``loader.sampler.generator``, ``loader.batch_sampler.sampler.generator`` and
    so on down samplers that wrap samplers."""
    found: dict[int, torch.Generator] = {}
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if obj is None or id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Generator):
            found.setdefault(id(obj), obj)
            return
        for name in _RANDOM_PARTS:
            visit(getattr(obj, name, None), depth + 1)

    for loader in loaders:
        visit(loader, 0)
    return list(found.values())


class Snapshot:
    """``Snapshot(model, optimizers, schedulers, generators, stateful)`` remembers; ``.restore()`` puts it all back.

    ``stateful`` are other objects with ``state_dict`` / ``load_state_dict`` (a precision plugin).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizers: Iterable[torch.optim.Optimizer] = (),
        schedulers: Iterable[Any] = (),
        generators: Iterable[torch.Generator] = (),
        stateful: Iterable[Any] = (),
    ) -> None:
        self.model = model
        self.optimizers = list(optimizers)
        self.schedulers = list(schedulers)
        with torch.no_grad():
            self.tensors = {f"p:{n}": to_cpu(p) for n, p in model.named_parameters()}
            self.tensors.update({f"b:{n}": to_cpu(b) for n, b in model.named_buffers() if b is not None})
        self.grads = {n: None if p.grad is None else to_cpu(p.grad) for n, p in model.named_parameters()}
        self.modes = {n: m.training for n, m in model.named_modules()}
        self.metrics = _metric_states(model)
        self.optimizer_states = [to_cpu(opt.state_dict()) for opt in self.optimizers]
        # tensor hyperparameters (a capturable optimizer's lr on the device): restored into the same objects
        self.group_tensors = [
            [{k: v for k, v in g.items() if isinstance(v, torch.Tensor)} for g in opt.param_groups]
            for opt in self.optimizers
        ]
        self.scheduler_states = [to_cpu(s.state_dict()) for s in self.schedulers]
        self.stateful = [(obj, to_cpu(obj.state_dict())) for obj in stateful]
        self.generators = [(g, g.get_state()) for g in {id(g): g for g in generators}.values()]
        self.rng = rng_states()

    @torch.no_grad()
    def restore(self) -> None:
        model = self.model
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        for key, value in self.tensors.items():
            kind, name = key.split(":", 1)
            target = params[name] if kind == "p" else buffers[name]
            target.copy_(value)
        for name, grad in self.grads.items():
            p = params[name]
            if grad is None:
                p.grad = None
            elif p.grad is None:
                p.grad = grad.to(p.device, copy=True)  # a copy: backward adds into it in place
            else:
                p.grad.copy_(grad)
        for name, module in model.named_modules():
            if name in self.modes:
                module.training = self.modes[name]
        if self.metrics:
            modules = dict(model.named_modules())
            for name, (states, counters) in self.metrics.items():
                metric = modules[name]
                for attr, value in states.items():
                    setattr(metric, attr, _to_device(value, metric.device))
                _compat.set_metric_counters(metric, counters)
        for opt, state, tensors in zip(self.optimizers, self.optimizer_states, self.group_tensors):
            # load_state_dict keeps 'step' on the CPU and casts the rest to each param's device and dtype
            opt.load_state_dict(copy.deepcopy(state))
            for group, originals in zip(opt.param_groups, tensors):
                for key, original in originals.items():
                    original.copy_(group[key])
                    group[key] = original
        for sched, state in zip(self.schedulers, self.scheduler_states):
            sched.load_state_dict(copy.deepcopy(state))
        for obj, state in self.stateful:
            obj.load_state_dict(copy.deepcopy(state))
        for generator, generator_state in self.generators:
            generator.set_state(generator_state)
        set_rng_states(self.rng)


def _to_device(value: Any, device: torch.device) -> Any:
    """A copy of ``value`` on ``device``, never the kept one itself: a metric's ``update`` adds into its states in
    place, and the snapshot may be restored again."""
    if isinstance(value, torch.Tensor):
        return value.to(device, copy=True)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value
