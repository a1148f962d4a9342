#!/usr/bin/python3
"""A real gRPC peer for ftrpc's gRPC tests (grpcio, generic calls: no generated code).

client TARGET [--ca FILE] [--token T] CASE...   runs each case against an ftrpc server and
    prints one line per case: "CASE STATUS DETAIL" (STATUS is grpc.StatusCode's name; DETAIL the
    answer's bytes on OK, else the status details).
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
        elif case == 'remaining':
            line = status_line(case, lambda: unary('Remaining')(b'x', timeout=5))
        elif case == 'meta':
            line = status_line(case, lambda: unary('Meta')(
                b'x-trace-id', timeout=10, metadata=[('x-trace-id', 'abc123'), ('x-other', 'y')]))
        elif case == 'stream':
            line = status_line(case, lambda: ch.stream_unary(SVC + 'Echo')(
                iter([b'one', b'two']), timeout=10))
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


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == 'client':
        sys.exit(run_client(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
