"""The fault-injection setting: parsed with every field named in its errors, off on a requeued SLURM job."""

import pytest

from megatron_vl.training.fault_injection import WHEN_PRIORITY, FaultInjection, FaultInjectionHook


def test_parse_fills_the_defaults():
    fault = FaultInjection.parse("signal=USR1, target=job_batch iteration=4 repeat=2")
    assert fault == FaultInjection(signal="SIGUSR1", target="job_batch", iteration=4, repeat=2)
    assert fault.when == "after_save" and fault.delay == 0.0 and fault.rank == 0
    assert FaultInjection.from_environment({}) is None
    assert FaultInjection.from_environment({"MVL_FAULT_INJECTION": "signal=KILL target=node iteration=1"}).signal == "SIGKILL"


@pytest.mark.parametrize("text, message", [
    ("signal=USR9 target=rank iteration=1", "unknown signal 'USR9'"),
    ("signal=USR1 target=moon iteration=1", "target='moon': choose one of"),
    ("signal=USR1 target=rank iteration=1 when=lunch", "when='lunch'"),
    ("signal=USR1 target=rank", r"lacks \['iteration'\]"),
    ("signal=USR1 target=rank iteration=one", "iteration='one' must be an integer"),
    ("signal=USR1 target=rank iteration=1 colour=red", "'colour=red' is not one of key=value"),
    ("signal=USR1 target=rank iteration=0", "iteration must be a positive integer"),
])
def test_bad_settings_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        FaultInjection.parse(text)


def test_the_hook_sits_where_its_point_says():
    for when, priority in WHEN_PRIORITY.items():
        fault = FaultInjection(signal="SIGUSR1", target="rank", iteration=1, when=when)
        assert FaultInjectionHook(fault).priority == priority
    assert WHEN_PRIORITY["before_eval"] < 200 < 400 < WHEN_PRIORITY["before_save"] < 500 < WHEN_PRIORITY["after_save"]
