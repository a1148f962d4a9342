#!/usr/bin/env python3
"""Parses the Prometheus exposition that test_metrics_registry wrote (argv[1]) with the reference
parser, prometheus_client (Debian: python3-prometheus-client), and checks what it understood:
families, types, one TYPE per family, unescaped label values and values. Exits 77 (CTest: skipped)
when the module is not installed."""
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("prometheus_client not installed: skipped")
    sys.exit(77)


def main(path):
    text = open(path, encoding="utf-8").read()
    fams = list(text_string_to_metric_families(text))
    by_name = {f.name: f for f in fams}
    assert len(by_name) == len(fams), "a family appears twice"
    want_types = {
        "_9lives_gauge": "gauge",
        "process_connections": "gauge",
        "rpc_client": "summary",
        "rpc_client_qps": "gauge",
        "rpc_client_max_latency": "gauge",
        "rpc_server_calls": "counter",
    }
    got_types = {n: f.type for n, f in by_name.items()}
    assert got_types == want_types, got_types

    calls = {s.labels["method"]: s.value for s in by_name["rpc_server_calls"].samples}
    assert calls == {'a"b\\c\nd': 1.0, "example.EchoService/Echo": 42.0}, calls
    assert by_name["rpc_server_calls"].documentation == "calls served, by method \\ and\nline two"

    summ = by_name["rpc_client"].samples
    q = {(s.labels["endpoint"], s.labels["quantile"]): s.value
         for s in summ if "quantile" in s.labels}
    # recorded in ns, shown in µs: sub-microsecond figures keep their fraction
    assert q[("127.0.0.1:8000", "0.5")] == 0.501
    assert q[("127.0.0.1:8000", "0.99")] == 1.0
    assert len(q) == 8, q
    totals = {(s.name, s.labels["endpoint"]): s.value for s in summ if "quantile" not in s.labels}
    assert totals[("rpc_client_count", "127.0.0.1:8000")] == 10.0
    assert totals[("rpc_client_sum", "127.0.0.1:8000")] == 5.5
    assert by_name["process_connections"].samples[0].value == -3.0
    print("ok: %d families parsed" % len(fams))


if __name__ == "__main__":
    main(sys.argv[1])
