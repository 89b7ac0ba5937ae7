"""Memory per node: RSS growth while recording the workload in a fresh
interpreter (compare.py --memory), divided by the workload's node count.
The timing is the subprocess's; the number that matters is in extra_info
(``--benchmark-json`` keeps it) and in the assertion for autograd_c."""
import os
import sys

import pytest

import workloads as W

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import compare  # noqa: E402

# Larger than the timing suites' sizes so that the reading stands well above
# the allocator's noise (a few hundred kB).
SIZES = {"chain": 100_000, "wide": 100_000, "mlp": 100}


@pytest.mark.parametrize("name", W.WORKLOADS)
@pytest.mark.parametrize("peer", [p for p in W.PEERS if W.PEERS[p].cls.records and p != "floats"])
def test_memory(benchmark, peer, name):
    if not W.PEERS[peer].runs(name):
        pytest.skip(f"{peer} runs {', '.join(W.PEERS[peer].workloads)} only")
    if not W.PEERS[peer].available():
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"memory {name} (see extra_info.bytes_per_node)"
    args = ["--memory", peer, name, "--size", str(SIZES[name])]
    row = benchmark.pedantic(compare.run_subprocess, args=(args, 300), rounds=1)
    assert row["status"] == "ok", row
    benchmark.extra_info.update(bytes_per_node=row["bytes_per_node"], nodes=row["nodes"])
    print(f"{peer} {name}: {row['bytes_per_node']:.1f} bytes/node")
    assert row["bytes_per_node"] > 0
    if peer == "autograd_c" and name == "chain":
        # 16 bytes a node (code word + value), docs/architecture.md; leaves are 2 of 300,000
        assert 12 <= row["bytes_per_node"] <= 20, row
