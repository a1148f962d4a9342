#!/usr/bin/env python3
"""Scrapes /metrics of a live `ftrpc echo-server` after known traffic and parses it with the
reference parser, prometheus_client (Debian: python3-prometheus-client).

Known traffic: N calls over HTTP on one keep-alive connection and one call to an unknown method;
then the figures must say count N and no errors for Echo, the families must be typed as documented
(docs/observability.md), and the page must be served as text/plain; version=0.0.4. Exits 77 (CTest: skipped) when the module is missing.
argv[1] is the ftrpc CLI."""
import http.client
import subprocess
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("prometheus_client not installed: skipped")
    sys.exit(77)

N = 25


def request(conn, method, path, body=None):
    conn.request(method, path, body=body)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def main(cli):
    srv = subprocess.Popen([cli, "echo-server", "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = srv.stdout.readline()
        assert line.startswith("listening on "), line
        port = int(line.strip().rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # one keep-alive connection
        for i in range(N):
            st, _, body = request(conn, "POST", "/example.EchoService/Echo", b"call %d" % i)
            assert st == 200 and body == b"call %d" % i, (st, body)
        st, _, _ = request(conn, "POST", "/example.EchoService/NoSuchMethod", b"x")
        assert st == 404, st
        st, headers, body = request(conn, "GET", "/metrics")
        assert st == 200, st
        ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        text = body.decode("utf-8")
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        types = {n: fams[n].type for n in ("rpc_server", "rpc_server_qps", "rpc_server_max_latency",
                                           "rpc_server_concurrency", "rpc_server_errors",
                                           "rpc_server_rejected")}
        assert types == {"rpc_server": "summary", "rpc_server_qps": "gauge",
                         "rpc_server_max_latency": "gauge", "rpc_server_concurrency": "gauge",
                         "rpc_server_errors": "counter", "rpc_server_rejected": "counter"}, types
        echo = {"service": "example.EchoService", "method": "Echo"}
        count = [s.value for s in fams["rpc_server"].samples
                 if s.name == "rpc_server_count" and s.labels == echo]
        assert count == [float(N)], count
        quantiles = {s.labels["quantile"] for s in fams["rpc_server"].samples if "quantile" in s.labels}
        assert quantiles == {"0.5", "0.9", "0.99", "0.999"}, quantiles
        errors = sum(s.value for s in fams["rpc_server_errors"].samples
                     if s.labels.get("method") == "Echo")
        assert errors == 0, errors
        reasons = {s.labels["reason"] for s in fams["rpc_server_rejected"].samples}
        assert reasons == {"limit", "deadline", "stopping"}, reasons
        print("ok: %d families parsed from a live /metrics" % len(fams))
    finally:
        srv.terminate()
        srv.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1])
