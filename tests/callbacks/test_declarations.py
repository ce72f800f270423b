"""One declaration per schedule: the shape's fields (``arg(...)``: default, check, documentation); the callbacks'
signatures and docstrings are generated from them, and the app's configs follow them.

These tests fail when they drift apart: generated code that is not current, a callback argument the shape does not
declare (or another default),
a config key the callback does not take, a config value that differs from the callback's default without being
one of the app's stated choices. They also drive a schedule declared by a user (``CustomSchedule``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import textwrap
import types
from pathlib import Path
from typing import ClassVar

import pytest
from omegaconf import OmegaConf

from lightning_cyclic import CustomSchedule, Cyclical, OneCycle, WarmRestarts, WarmupDecay, WarmupStableDecay
from lightning_cyclic.callbacks import ScheduleCallback, generate
from lightning_cyclic.shapes import Arg, OneCycleSchedule, Schedule
from lightning_cyclic.shapes.args import arg
from tests.conftest import CONF
from tests.helpers import TinyModule, tiny_loader, tiny_trainer

CALLBACKS = (OneCycle, Cyclical, WarmRestarts, WarmupDecay, WarmupStableDecay)
CALLBACK_ONLY = {"self", "interval", "total_steps", "log", "finder", "optimizer"}  # the Lightning side's own


@pytest.mark.parametrize("callback", CALLBACKS, ids=lambda c: c.__name__)
def test_a_callbacks_arguments_are_its_shapes_declared_ones_with_the_same_defaults(callback):
    shape = callback.schedule_cls
    params = inspect.signature(callback.__init__).parameters
    assert [name for name in params if name not in CALLBACK_ONLY] == list(shape.ARGS)  # same names, same order
    fields = {f.name: f for f in dataclasses.fields(shape) if f.init}
    for name in shape.ARGS:
        field, given = fields[name], params[name].default
        if field.default is dataclasses.MISSING:
            assert given is inspect.Parameter.empty, name
        else:
            assert given == field.default or tuple(given) == tuple(field.default), name
        assert f"    {name}:" in callback.__doc__, f"{callback.__name__}'s docstring does not describe {name}"
    lengths = {n for n, a in shape.ARGS.items() if a.unit == "length"}
    assert set(callback(**_required(callback)).lengths) == lengths


def test_the_callbacks_generated_code_is_what_their_shapes_declare():
    # a shape's field changed without `python -m lightning_cyclic.callbacks.generate` fails here
    for name in generate.MODULES:
        module = importlib.import_module(name)
        source = Path(module.__file__).read_text()
        assert generate.render(source, module) == source, f"{name} is not current: run the generator"


def test_an_argument_added_to_a_shape_reaches_the_callbacks_signature_and_docstring():
    # the generator reads the shape's fields: a new one appears in __init__ and in the Args, documented
    @dataclasses.dataclass(frozen=True)
    class Wider(OneCycleSchedule):
        floor: float = arg(0.0, unit="lr", low=0, doc="the lowest lr the run may reach.")

    class WiderCycle(ScheduleCallback):
        """One-cycle with a floor.

        Args:
            max_lr: stale
        """

        schedule_cls = Wider
        default_interval = None
        takes_total_steps = True

        def __init__(self, max_lr):
            pass

    module = types.SimpleNamespace(WiderCycle=WiderCycle)
    source = inspect.getsource(WiderCycle)
    out = generate.render(textwrap.dedent(source), module)
    assert "        floor: float = 0.0," in out
    assert "        floor: the lowest lr the run may reach." in out
    assert "max_lr: stale" not in out and "One-cycle with a floor." in out
    namespace = {}
    exec(  # the generated class runs: the new argument is checked against its declaration
        "from __future__ import annotations\n" + out,
        {**vars(importlib.import_module("lightning_cyclic.callbacks.cycles")), "Wider": Wider},
        namespace,
    )
    made = namespace["WiderCycle"](max_lr=0.1, floor=0.001)
    assert made.params["floor"] == 0.001
    with pytest.raises(ValueError, match="floor must be >= 0, got -1"):
        namespace["WiderCycle"](max_lr=0.1, floor=-1)


def _required(callback) -> dict:
    values = {"max_lr": 0.1, "base_lr": 0.01, "cycle_len": 2}
    params = inspect.signature(callback.__init__).parameters
    return {k: v for k, v in values.items() if k in params}


# the values the app's configs choose on purpose, different from the callbacks' defaults
APP_CHOICES = {
    "max_lr": "every schedule peaks at ${optimizer.lr} (README: one lr to set)",
    "base_lr": "a share of ${optimizer.lr}",
    "interval": "the configs count in epochs, which a user reads more easily than steps",
    "step_size_up": "2 epochs up (the callback's 2000 is torch's, in steps)",
    "cycle_len": "2 epochs (required by the callback)",
    "cycle_mult": "cycles of 2, 4, 8 epochs",
    "warmup": "one epoch of warmup",
    "decay": "the constant preset",
    "monitor": "the app's classifier logs val/acc",
    "mode": "val/acc: higher is better",
    "patience": "2 epochs without improvement before a cut",
    "restore_best": "the best weights back before each cut",
    "restore": "the app's callbacks.best_snapshot restores at the end",
    "parts": "a constant tenth of the lr, then a one-cycle",
    "backbone": "the app's models are nn.Sequential: all but the last layer",
    "unfrozen_max_lr": "half of max_lr (fastai), so the default run needs no second range test",
    "backbone_lr_mult": "a tenth of the head's lr on these small models",
    "boundaries": "the second part from epoch 2",
}


@pytest.mark.parametrize("path", sorted((CONF / "schedule").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_schedule_config_takes_its_callbacks_arguments_and_defaults(path):
    import lightning_cyclic

    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    callback = getattr(lightning_cyclic, node.pop("_target_").rsplit(".", 1)[-1])
    params = inspect.signature(callback.__init__).parameters
    assert set(node) <= set(params) - {"self"}, set(node) - set(params)
    for key, value in node.items():
        default = params[key].default
        same = value == default or (isinstance(value, list) and tuple(value) == default)
        assert same or key in APP_CHOICES, f"{path.name}: {key}={value!r}, the callback's default is {default!r}"
    shared = [p for p in (CONF / "schedule").glob("*.yaml") if p != path and OmegaConf.load(p)._target_ == callback]
    presets = {"constant.yaml"}  # WarmupDecay with decay=constant: its other arguments do nothing there
    # the callback's own shape (PlateauDecay decides from metrics; FineTune builds a Sequential of its phases)
    shape = vars(callback).get("schedule_cls")
    if path.name not in presets and shape is not None:  # the full config shows every argument YAML can hold
        yaml_able = [n for n, a in shape.ARGS.items() if a.kind != "callable"]
        assert set(yaml_able) <= set(node), set(yaml_able) - set(node)
    if shape is None:  # every argument of the callback, then
        assert set(node) == set(params) - {"self"}, set(params) - {"self"} - set(node)
    assert not shared or path.name in presets or all(p.name in presets for p in shared)


# --- a schedule declared by a user --------------------------------------------------------------

BUILT: list[float] = []


@dataclasses.dataclass(frozen=True)
class HalfLife(Schedule):
    """The lr halves every ``half_life`` steps; momentum is left alone."""

    max_lr: float
    half_life: float
    total_steps: float | None = None

    ARGS: ClassVar[dict[str, Arg]] = {
        "max_lr": Arg("lr", low=0, low_open=True, auto="lr"),
        "half_life": Arg("length", low=0, low_open=True),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        BUILT.append(self.max_lr)

    def lr(self, step: float) -> float:
        return self.max_lr * 0.5 ** (step / self.half_life)


def test_a_users_schedule_is_one_declaration_and_trains_with_epochs_converted(tmp_path):
    callback = CustomSchedule(HalfLife, max_lr=0.4, half_life=1, interval="epoch")
    BUILT.clear()
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=3)
    module = TinyModule()
    trainer.fit(module, tiny_loader())  # 64 samples / 8 = 8 steps an epoch
    assert BUILT == [0.4]  # built once for the fit
    lrs = [lr for _, lr, _, _ in module.seen]
    assert lrs[0] == pytest.approx(0.4) and lrs[8] == pytest.approx(0.2) and lrs[16] == pytest.approx(0.1)
    assert callback.state_key != CustomSchedule(HalfLife, max_lr=0.4, half_life=2, interval="epoch").state_key
    assert "shape" in callback.state_key and "HalfLife" in callback.state_key


def test_a_users_schedule_takes_auto_and_builds_once(tmp_path):
    from tests.helpers import RichModule

    BUILT.clear()
    callback = CustomSchedule(HalfLife, max_lr="auto", half_life=20)
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=2)
    trainer.fit(RichModule(scheduler=False), tiny_loader(learnable=True))
    assert callback.resolved and math.isfinite(callback.resolved["max_lr"])
    assert BUILT == [callback.resolved["max_lr"]]  # "auto" was never faked with a stand-in value


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(max_lr=-1, half_life=1), ValueError, "max_lr must be > 0, got -1"),
        (dict(max_lr=0.1, half_life=0), ValueError, "half_life must be > 0, got 0"),
        (dict(max_lr=0.1, half_life=1, halflife=2), ValueError, "halflife is not an argument of the shape"),
    ],
)
def test_a_users_schedule_is_checked_against_its_declaration_at_once(kwargs, error, message):
    with pytest.raises(error, match=message):
        CustomSchedule(HalfLife, **kwargs)


def test_custom_schedule_refuses_what_is_not_a_shape():
    with pytest.raises(TypeError, match="shape must be a Schedule subclass"):
        CustomSchedule(lambda step: 0.1, max_lr=0.1)


def test_auto_arguments_are_skipped_by_the_checks_not_stood_in_for():
    # base_lr=0.5 above the stand-in max_lr the checks once used: valid, the range test decides max_lr
    assert Cyclical(base_lr=0.5, max_lr="auto").auto == {"max_lr": "high"}
    assert Cyclical(base_lr="auto", max_lr=0.001).auto == {"base_lr": "low"}
    with pytest.raises(ValueError, match="max_lr must be >= base_lr"):
        Cyclical(base_lr=0.5, max_lr=0.1)
    with pytest.raises(ValueError, match="has no value yet"):
        OneCycle(max_lr="auto").build(total_steps=10, steps_per_epoch=1)
