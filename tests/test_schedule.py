"""The gradual trim schedule starts dense, removes the least important units first, ends at the plan."""
from sensi_edge.artifacts import TrimPlan
from sensi_edge.cost import Geometry
from sensi_edge.finetune import TrimSchedule


def test_schedule_ramps_from_dense_to_plan():
    g = Geometry(16, 4, (4,), (8,))
    plan = TrimPlan(g, ((2, 3),), ((0, 1, 2),), {"kind": "params"})
    head_imp = ((0.1, 0.5, 1.0, 2.0),)
    neuron_imp = ((9, 8, 7, 1, 2, 3, 4, 5),)
    s = TrimSchedule(plan, head_imp, neuron_imp, ramp=0.5)
    s.apply(0, 100)
    assert s.masks.heads[0].tolist() == [1, 1, 1, 1] and s.masks.neurons[0].sum() == 8
    s.apply(25, 100)  # half way through the ramp: half of the removed units are gone, least important first
    assert s.masks.heads[0].tolist() == [0, 1, 1, 1]
    assert s.masks.neurons[0].tolist() == [1, 1, 1, 0, 0, 1, 1, 1]
    s.apply(50, 100)
    assert s.masks.heads[0].tolist() == [0, 0, 1, 1]
    assert s.masks.neurons[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    s.apply(100, 100)
    assert s.masks.heads[0].tolist() == [0, 0, 1, 1]


def test_one_shot_schedule_applies_plan_at_step_zero():
    g = Geometry(16, 4, (4,), (8,))
    plan = TrimPlan(g, ((1,),), ((),), {"kind": "params"})
    s = TrimSchedule(plan, ((0, 0, 0, 0),), ((0,) * 8,), ramp=0)
    s.apply(0, 10)
    assert s.masks.heads[0].tolist() == [0, 1, 0, 0] and s.masks.neurons[0].sum() == 0
