#!/usr/bin/python3
"""A real gRPC peer for ftrpc's gRPC tests (grpcio, generic calls: no generated code).

server [--delay-ms N]   serves example.EchoService on 127.0.0.1 (a free port), prints
    "listening on 127.0.0.1:PORT" first, then "cancelled METHOD" each time a call is cancelled
    by its client before its answer. Methods: Echo (answers the request, after N ms when
    --delay-ms), Fail (aborts with the status named by the request, e.g. b"NOT_FOUND"), Slow (waits
    up to 5 s for the client to give up). SIGTERM or SIGKILL ends it.

client TARGET [--ca FILE] [--token T] CASE...   runs each case against an ftrpc server and
    prints one line per case: "CASE STATUS DETAIL" (STATUS is grpc.StatusCode's name; DETAIL the
    answer's bytes on OK, else the status details; for the case pushback, the
    grpc-retry-pushback-ms trailer of the answer, "-" when it has none).
"""
import sys
import time

import grpc

SVC = '/example.EchoService/'


def status_line(case, call):
    try:
        out = call()
        return '%s OK %s' % (case, out.decode('utf-8', 'replace'))
    except grpc.RpcError as e:
        return '%s %s %s' % (case, e.code().name, e.details())


def run_client(argv):
    target, ca, token, cases = argv[0], None, None, []
    i = 1
    while i < len(argv):
        if argv[i] == '--ca':
            ca = argv[i + 1]
            i += 2
        elif argv[i] == '--token':
            token = argv[i + 1]
            i += 2
        else:
            cases.append(argv[i])
            i += 1
    if ca:
        creds = grpc.ssl_channel_credentials(root_certificates=open(ca, 'rb').read())
        ch = grpc.secure_channel(target, creds,
                                 options=[('grpc.ssl_target_name_override', 'localhost')])
    else:
        ch = grpc.insecure_channel(target)

    def unary(method):
        return ch.unary_unary(SVC + method, request_serializer=None, response_deserializer=None)

    md = [('authorization', 'Bearer ' + token)] if token else None
    for case in cases:
        if case == 'echo':
            line = status_line(case, lambda: unary('Echo')(b'hello grpc', timeout=10, metadata=md))
        elif case == 'gzip':
            line = status_line(case, lambda: unary('Echo')(
                b'z' * 4000, timeout=10, compression=grpc.Compression.Gzip, metadata=md))
            if ' OK ' in line:
                line = '%s OK %d bytes' % (case, len(line.split(' ', 2)[2]))
        elif case == 'unknown':
            line = status_line(case, lambda: unary('NoSuchMethod')(b'x', timeout=10))
        elif case == 'unknown_service':
            line = status_line(case, lambda: ch.unary_unary('/nope.Service/Echo')(b'x', timeout=10))
        elif case.startswith('fail_'):
            line = status_line(case, lambda: unary('Fail')(case[5:].encode(), timeout=10))
        elif case == 'deadline':
            line = status_line(case, lambda: unary('Slow')(b'x', timeout=0.3))
        elif case == 'hold':
            line = status_line(case, lambda: unary('Hold')(b'x', timeout=10))
        elif case == 'remaining':
            line = status_line(case, lambda: unary('Remaining')(b'x', timeout=5))
        elif case == 'meta':
            line = status_line(case, lambda: unary('Meta')(
                b'x-trace-id', timeout=10, metadata=[('x-trace-id', 'abc123'), ('x-other', 'y')]))
        elif case == 'stream':
            line = status_line(case, lambda: ch.stream_unary(SVC + 'Echo')(
                iter([b'one', b'two']), timeout=10))
        elif case == 'pushback':
            # a refused call's trailing metadata: "pushback STATUS MS" (MS "-" when absent)
            try:
                unary('Echo')(b'echo', timeout=10, metadata=md)
                line = '%s OK -' % case
            except grpc.RpcError as e:
                after = dict(e.trailing_metadata() or ()).get('grpc-retry-pushback-ms', '-')
                line = '%s %s %s' % (case, e.code().name, after)
        elif case == 'cancel':
            fut = unary('Slow').future(b'x', timeout=10)
            time.sleep(0.3)
            fut.cancel()
            line = '%s sent' % case
        else:
            line = '%s ? unknown case' % case
        print(line, flush=True)
    ch.close()
    return 0


def run_server(argv):
    from concurrent import futures
    delay = 0.0
    if len(argv) >= 2 and argv[0] == '--delay-ms':
        delay = int(argv[1]) / 1000.0

    def wait_cancel(ctx, name, seconds):
        end = time.time() + seconds
        while time.time() < end:
            if not ctx.is_active():
                print('cancelled %s' % name, flush=True)
                return True
            time.sleep(0.005)
        return False

    def echo(req, ctx):
        if delay and wait_cancel(ctx, 'Echo', delay):
            return b''
        return req

    def fail(req, ctx):
        ctx.abort(getattr(grpc.StatusCode, req.decode()), 'failed with ' + req.decode())

    def slow(req, ctx):
        wait_cancel(ctx, 'Slow', 5)
        return b'slow'

    methods = {'Echo': echo, 'Fail': fail, 'Slow': slow}

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            svc, _, name = details.method.rpartition('/')
            if svc != '/example.EchoService' or name not in methods:
                return None
            return grpc.unary_unary_rpc_method_handler(methods[name])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((Handler(),))
    port = server.add_insecure_port('127.0.0.1:0')
    server.start()
    print('listening on 127.0.0.1:%d' % port, flush=True)
    server.wait_for_termination()
    return 0


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == 'client':
        sys.exit(run_client(sys.argv[2:]))
    if len(sys.argv) >= 2 and sys.argv[1] == 'server':
        sys.exit(run_server(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
