"""experiments/profile_ops.py: the per-op table of a profiler trace."""

from conftest import REPO, load_module


def test_op_table_reads_device_op_lines_of_a_trace():
    """A GPU trace's 'XLA Ops' line wins over its streams and the host's threads."""
    profile = load_module(REPO / "experiments" / "profile_ops.py")
    meta = lambda pid, tid, kind, name: {"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": {"name": name}}
    span = lambda pid, tid, name, dur: {"ph": "X", "pid": pid, "tid": tid, "name": name, "dur": dur}
    events = [
        meta(1, None, "process_name", "/device:GPU:0"),
        meta(1, 7, "thread_name", "XLA Ops"),
        meta(1, 8, "thread_name", "Stream #13(Compute)"),
        meta(2, None, "process_name", "/host:CPU"),
        meta(2, 9, "thread_name", "tf_XLAPjRtCpuClient/1"),
        span(1, 7, "fusion.3", 30.0),
        span(1, 7, "fusion.3", 10.0),
        span(1, 7, "gemm.1", 60.0),
        span(1, 8, "sm90_xmma_gemm", 55.0),
        span(2, 9, "host_thunk", 500.0),
    ]
    totals, source = profile.op_times(events)
    assert source == "device XLA Ops" and totals == {"fusion.3": [40.0, 2], "gemm.1": [60.0, 1]}
    rows = profile.table(totals, top=1, repeats=2)
    assert rows == [{"op": "gemm.1", "ms_per_call": 0.03, "count_per_call": 0.5, "share": 0.6}]
