"""The device-time model (pamdi_node/devicetime.py), the time stretch (orchestrator/timescale.py)
and the prediction helpers (orchestrator/predict.py), against hand computation."""

from __future__ import annotations

import pytest

from orchestrator.spec import parse_spec
from pamdi_node import devicetime


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s + 0.0001  # the OS wakes a little late


def test_profile_holds_until_the_modelled_time() -> None:
    clock = FakeClock(10.030)  # computed 30 ms after start, modelled 100 ms
    t = devicetime.hold("profile", 10.0, 10.030, 0.100, clock=clock, sleep=clock.sleep)
    assert t.host_s == pytest.approx(0.030)
    assert t.overrun_s == 0.0
    assert t.released >= 10.100
    assert clock.slept[0] == pytest.approx(0.070)


def test_profile_records_an_overrun_and_does_not_wait() -> None:
    clock = FakeClock(10.130)  # the host took 130 ms for a 100 ms device
    t = devicetime.hold("profile", 10.0, 10.130, 0.100, clock=clock, sleep=clock.sleep)
    assert clock.slept == []
    assert t.overrun_s == pytest.approx(0.030)
    assert t.released == pytest.approx(10.130)
    assert devicetime.is_overrun(t.overrun_s) and not devicetime.is_overrun(0.0005)


@pytest.mark.parametrize("model", ["quota", "native"])
def test_quota_and_native_release_at_once(model: str) -> None:
    clock = FakeClock(10.030)
    t = devicetime.hold(model, 10.0, 10.030, 0.100, clock=clock, sleep=clock.sleep)
    assert clock.slept == [] and t.released == 10.030 and t.overrun_s == 0.0


def test_real_sleep_releases_close_to_the_modelled_time() -> None:
    import time

    t0 = time.time()
    t = devicetime.hold("profile", t0, t0, 0.02)
    assert 0.02 <= t.released - t0 < 0.025


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="device_time: 'fast'"):
        devicetime.check("fast")


SPEC = parse_spec({
    "name": "k", "seed": 3, "beacon_period_ms": 50,
    "nodes": [{"name": "a", "device": "xavier-nx"}, {"name": "b", "speed": 2.0}],
    "links": [{"a": "a", "b": "b", "rate_mbit": 20, "delay_ms": 2}],
    "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 5, "interval_ms": 100, "start_ms": 10},
                {"name": "r", "node": "b", "model": "tiny", "samples": 5, "rate_hz": 4}],
    "failures": [{"node": "b", "at_s": 1.0, "recover_after_s": 0.5}],
})


def test_stretch_scales_every_modelled_duration() -> None:
    from orchestrator.devices import node_speed
    from orchestrator.timescale import stretch_spec

    k = 2.5
    st = stretch_spec(SPEC, k)
    assert [node_speed(n) for n in st.nodes] == pytest.approx([0.5 / k, 2.0 / k])
    (lk,) = st.resolved_links()
    assert (lk.rate_mbit, lk.delay_ms) == pytest.approx((20 / k, 2 * k))
    s, r = st.sources
    assert (s.interval_s, s.start_ms, s.samples) == pytest.approx((0.1 * k, 10 * k, 5))
    assert r.interval_s == pytest.approx(0.25 * k)
    assert st.beacon_period_ms == pytest.approx(50 * k)
    (f,) = st.failures
    assert (f.at_s, f.recover_after_s) == pytest.approx((1.0 * k, 0.5 * k))
    assert stretch_spec(SPEC, 1.0) is SPEC


def test_stretched_simulation_is_the_nominal_one_k_times_slower() -> None:
    """Time dilation is exact for the model: every latency of the stretched spec is k x nominal."""
    from orchestrator.simulator import simulate
    from orchestrator.timescale import stretch_spec

    k = 1.75
    spec = SPEC.model_copy(update={"failures": ()})
    for policy in ("local", "pa-mdi", "ar-mdi"):
        nominal = simulate(spec, policy).records
        stretched = simulate(stretch_spec(spec, k), policy).records
        assert [r.latency_s * k for r in nominal] == pytest.approx([r.latency_s for r in stretched], rel=1e-6)


def test_stretch_scales_rate_parameters_so_aging_keeps_its_effect() -> None:
    """PA-MDI's aging is a rate: unscaled, a stretched run would let NTS overtake TS k times sooner."""
    from orchestrator.simulator import simulate
    from orchestrator.timescale import stretch_spec

    k = 3.0
    spec = parse_spec({
        "name": "aging", "seed": 1, "nodes": [{"name": "a"}], "policy_params": {"aging": 200.0},
        "sources": [{"name": "ts", "node": "a", "model": "tiny", "samples": 60, "interval_ms": 0.05, "priority": 10},
                    {"name": "nts", "node": "a", "model": "tiny", "samples": 60, "interval_ms": 0.05}],
    })
    st = stretch_spec(spec, k)
    assert st.policy_params == {"pa-mdi.aging": pytest.approx(200.0 / k)}
    # Without an aging given, the policy's default is scaled.
    assert stretch_spec(spec.model_copy(update={"policy_params": {}}), k).policy_params == {
        "pa-mdi.aging": pytest.approx(0.1 / k)}
    nominal = simulate(spec, "pa-mdi").records
    stretched = simulate(st, "pa-mdi").records
    # The queue grows past the NTS deadline offset (1/aging = 5 ms), so aging decides the order.
    assert max(r.latency_s for r in nominal) > 0.005
    assert [r.latency_s * k for r in nominal] == pytest.approx([r.latency_s for r in stretched], rel=1e-6)


def test_demand_quantile_by_hand() -> None:
    from orchestrator.timescale import demand_quantile

    # 0-1 s: 0.5 CPU; 1-2 s: 1.5 (two overlap); 2-4 s: 1.0. Mean over 4 s = (0.5 + 1.5 + 2) / 4.
    peak, mean = demand_quantile([(0.0, 2.0, 0.5), (1.0, 4.0, 1.0)], 0.95)
    assert mean == pytest.approx(1.0)
    assert peak == pytest.approx(1.5)
    assert demand_quantile([(0.0, 2.0, 0.5), (1.0, 4.0, 1.0)], 0.5)[0] == pytest.approx(1.0)
    assert demand_quantile([], 0.95) == (0.0, 0.0)


def test_headroom_stretches_only_when_the_host_is_short() -> None:
    from orchestrator.simulator import load_profiles
    from orchestrator.timescale import NODE_BUDGET, HeadroomError, estimate_headroom

    spec = SPEC.model_copy(update={"failures": ()})
    profiles = load_profiles(spec)
    roomy = estimate_headroom(spec.model_copy(update={"nodes": tuple(
        n.model_copy(update={"speed": 0.1, "device": None}) for n in spec.nodes)}), ["local"], profiles, cores=64)
    assert roomy.stretch == 1.0
    fast = estimate_headroom(spec, ["local"], profiles, cores=64)  # b at speed 2 needs 2 cores' worth
    assert fast.stretch == pytest.approx(2.0 / NODE_BUDGET, abs=0.05)
    with pytest.raises(HeadroomError, match="would need time stretched"):
        estimate_headroom(spec.model_copy(update={"nodes": tuple(
            n.model_copy(update={"speed": 20.0}) for n in spec.nodes)}), ["local"], profiles, cores=1)


def test_shorten_keeps_the_loads() -> None:
    from orchestrator.predict import shorten

    short = shorten(SPEC, 0.5)
    s, r = short.sources
    assert (s.samples, s.interval_s) == (4, pytest.approx(0.1))  # (0.5 - 0.01) / 0.1 -> 4
    assert (r.samples, r.interval_s) == (2, pytest.approx(0.25))
    assert shorten(SPEC, 100).sources == SPEC.sources


def test_runtime_costs_from_spans() -> None:
    from orchestrator.predict import runtime_costs

    spans = [{"kind": "decide", "node": "a", "to": "a", "start": 0.0, "end": d} for d in (0.001, 0.002, 0.009)]
    spans += [{"kind": "decide", "node": "a", "to": "b", "start": 0.0, "end": 0.5}]  # an offload: not counted
    spans += [{"kind": "serialize", "node": "a", "start": 0.0, "end": 0.0004},
              {"kind": "recv", "node": "b", "start": 1.0, "end": 1.0002}]
    c = runtime_costs(spans)
    assert c.decision_s == pytest.approx(0.004)  # the mean: the total the workers spent deciding
    assert c.message_s == pytest.approx(0.0006)
    # With enough back-to-back partitions, the gaps between them are the cost; a pair with another
    # task's compute in between (the worker served someone else) is not a decision gap.
    compute = []
    t = 0.0
    for i, gap in enumerate((0.001, 0.001, 0.002, 0.001, 0.005)):
        compute += [{"kind": "compute", "node": "a", "task": f"t{i}", "start": t, "end": t + 0.01, "blocks": [0, 2]},
                    {"kind": "compute", "node": "a", "task": f"t{i}", "start": t + 0.01 + gap, "end": t + 0.02 + gap,
                     "blocks": [2, 4]}]
        t += 1.0
    compute += [{"kind": "compute", "node": "a", "task": "u", "start": 10.0, "end": 10.01, "blocks": [0, 2]},
                {"kind": "compute", "node": "a", "task": "v", "start": 10.02, "end": 10.03, "blocks": [0, 4]},
                {"kind": "compute", "node": "a", "task": "u", "start": 10.04, "end": 10.05, "blocks": [2, 4]}]
    assert runtime_costs(spans + compute).decision_s == pytest.approx(0.002)
    # Under profile device time a result released after its modelled time kept the worker longer:
    # the mean lateness is charged too (here 1 ms on each of the 10 timed back-to-back ranges).
    timed = [dict(s, model_s=0.009) for s in compute[:10]]
    assert runtime_costs(spans + timed, "profile").decision_s == pytest.approx(0.002 + 0.001)
    assert runtime_costs(spans + timed, "quota").decision_s == pytest.approx(0.002)  # the in-run speed has it


def test_profile_device_time_models_devices_with_the_reference_not_this_host(tmp_path, monkeypatch) -> None:
    """A Xavier NX is the same device on every host under ``profile`` (the shipped reference, which
    ``pamdi simulate`` also uses); only ``quota``, which cannot hold, uses this host's own profile."""
    from orchestrator import hostprofiles
    from orchestrator.simulator import load_profiles

    monkeypatch.setenv("PAMDI_CACHE_DIR", str(tmp_path))
    spec = parse_spec({"name": "ref", "nodes": [{"name": "a", "device": "xavier-nx"}],
                       "sources": [{"name": "s", "node": "a", "model": "resnet56", "samples": 1}]})
    shipped = load_profiles(spec)["s"]
    # This host, as measured once and cached: twice as slow as the reference.
    slow = shipped.model_copy(update={"blocks": tuple(b.model_copy(update={"time_s": 2 * b.time_s})
                                                      for b in shipped.blocks)})
    folder = hostprofiles.host_profile_dir()
    folder.mkdir(parents=True)
    slow.save(folder / hostprofiles.profile_filename("resnet56", 1, 1))
    ref, choice = hostprofiles.run_profiles(spec, "profile")
    assert choice.kind == "shipped" and ref["s"].total_time_s == pytest.approx(shipped.total_time_s)
    own, choice = hostprofiles.run_profiles(spec, "quota")
    assert choice.kind == "host" and choice.measured == ()
    assert own["s"].total_time_s == pytest.approx(2 * shipped.total_time_s)


def test_a_policy_run_with_agent_failures_is_not_faithful() -> None:
    """An agent whose own timer or handler raised (e.g. a beacon it could not encode) ran a smaller
    network than the spec's: the summary names the node and the error and the run is not faithful,
    however clean its overruns; without failures the same run is faithful."""
    from orchestrator.metrics import COMPLETED, TaskRecord
    from orchestrator.runrecords import policy_summary

    records = [TaskRecord("ts", f"ts-{i}", float(i), i + 0.05, COMPLETED) for i in range(4)]
    spans = [{"kind": "compute", "model_s": 0.01, "overrun_s": 0.0} for _ in range(8)]
    clean = {"a": {"internal_errors": 0, "cpu_s": 1.0, "wall_s": 4.0}, "b": {"error": "unreachable"}}
    ok = policy_summary("pa-mdi", records, spans, clean, {"ts": 10.0}, "profile", 1.0)
    assert ok["faithful"] is True and "agent_errors" not in ok and ok["agents_cpu_cores"] == 0.25
    assert ok["sources"]["ts"]["mean_s"] == pytest.approx(0.05)
    broken = dict(clean, c={"internal_errors": 3, "last_internal_error": "WireError: 'queue_s' is outside [0, 1e9]"})
    bad = policy_summary("pa-mdi", records, spans, broken, {"ts": 10.0}, "profile", 1.0)
    assert bad["faithful"] is False and bad["overrun_fraction"] == 0.0
    assert bad["agent_errors"] == {"c": {"count": 3, "last": "WireError: 'queue_s' is outside [0, 1e9]"}}
