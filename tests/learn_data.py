"""Tiny datasets and runs shared by the learning tests."""

from heteroagg.data import DatasetConfig, default_config
from heteroagg.data.generation import generate


def tiny_config() -> DatasetConfig:
    """64² images of 2 nm pixels of small aggregates: seconds to generate."""
    config = default_config().to_dict()
    config["params"]["n_particles"] = {"prior": "log-uniform", "low": 6, "high": 30}
    config["params"]["radius_ti"] = {"prior": "log-uniform", "low": 2.0, "high": 5.0}
    config["params"]["radius_w"] = {"prior": "log-uniform", "low": 2.0, "high": 4.0}
    config["imaging"].update(pixel_size=2.0, shape=[64, 64])
    return DatasetConfig.from_dict(config)


def tiny_dataset(out, n: int, seed: int):
    generate(tiny_config(), n, out, seed=seed, shard_size=128)
    return out


def train_killed_at_step(step: int, data, out, config, monkeypatch, **options) -> None:
    """Run ``train`` until Ctrl-C arrives at optimiser step ``step``, as a killed run."""
    import pytest

    from heteroagg.learn import train
    from heteroagg.learn import training as training_module

    original = training_module.learning_rate
    calls = {"n": 0}

    def interrupted(config, k, steps):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return original(config, k, steps)

    monkeypatch.setattr(training_module, "learning_rate", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(data, out, config, progress=False, device="cpu", **options)
    finally:
        monkeypatch.setattr(training_module, "learning_rate", original)


def trainer_of(data, out, config, monkeypatch):
    """The member trainer ``train`` builds for ``config`` (on the CPU), before it trains."""
    from heteroagg.learn import train
    from heteroagg.learn import training as training_module

    trainers = []

    def keep(self):
        trainers.append(self)
        return 0, 0.0, "kept"

    with monkeypatch.context() as patch:
        patch.setattr(training_module._MemberTrainer, "run", keep)
        train(data, out, config, progress=False, device="cpu")
    return trainers[0]
