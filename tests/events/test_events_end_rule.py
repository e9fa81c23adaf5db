import numpy as np
import pytest

from wallwm_edge.errors import ConfigError
from wallwm_edge.events.end_rule import DEFAULT_END_RULE, EndRule


def test_done_reads_only_the_first_step_of_a_fresh_chunk():
    r = EndRule()
    assert r.is_done([0.9, 0.1, 0.1])
    assert not r.is_done([0.2, 0.99, 0.99])  # a forecast of the end is not "done"
    assert not r.is_done([])


def test_length_runs_to_the_forecast_end_capped_at_max_exec_and_at_least_one_step():
    r = EndRule(max_exec=8)
    assert r.forecast_length([0.1, 0.2, 0.7, 0.9]) == 3
    assert r.length([0.1, 0.2, 0.7, 0.9]) == 3
    assert r.forecast_length(np.full(16, 0.1)) == 16 and r.length(np.full(16, 0.1)) == 8
    assert r.length([0.9] * 4) == 1
    assert EndRule(cut_threshold=0.8, max_exec=16).length([0.1, 0.7, 0.85]) == 3


@pytest.mark.parametrize("kw", [{"done_threshold": 1.0}, {"cut_threshold": -0.1}, {"max_exec": 0}, {"max_exec": 2.5},
                                {"done_threshold": float("nan")}, {"max_exec": True}])
def test_bad_rules_are_refused_by_name(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        EndRule(**kw)


def test_the_runtime_the_policy_and_eval_share_the_one_rule():
    import inspect

    from wallwm_edge.eval import closed_loop
    from wallwm_edge.model import policy
    from wallwm_edge.runtime import engine

    assert engine.DEFAULT_END_RULE is DEFAULT_END_RULE and policy.DEFAULT_END_RULE is DEFAULT_END_RULE
    cfg = closed_loop.EvalConfig()
    assert closed_loop.end_rule(cfg) == DEFAULT_END_RULE  # eval's defaults are the runtime's rule
    for mod in (closed_loop, policy, engine):
        assert "> 0.5" not in inspect.getsource(mod)  # no second copy of the threshold logic
