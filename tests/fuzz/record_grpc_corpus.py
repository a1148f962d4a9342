#!/usr/bin/python3
"""Records the seed corpus of fuzz_grpc: the bytes grpcio clients send on a connection.

usage: record_grpc_corpus.py FTRPC_PORT OUT_DIR

A relay between grpcio and an ftrpc server (ftrpc echo-server --listen 127.0.0.1:FTRPC_PORT)
writes what each client connection sent into OUT_DIR/<case>. Each case uses a channel of its own.
"""
import os
import socket
import sys
import threading
import time

import grpc

FT_PORT = int(sys.argv[1])
OUT = sys.argv[2]


def pump(src, dst, record):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            if record is not None:
                record.append(b)
            dst.sendall(b)
    except OSError:
        pass
    for s in (dst,):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def relay_once(listener, name, done):
    c, _ = listener.accept()
    s = socket.create_connection(('127.0.0.1', FT_PORT))
    rec = []
    t1 = threading.Thread(target=pump, args=(c, s, rec))
    t2 = threading.Thread(target=pump, args=(s, c, None))
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(b''.join(rec))
    c.close()
    s.close()
    done.set()


def run(name, body):
    lst = socket.socket()
    lst.bind(('127.0.0.1', 0))
    lst.listen(1)
    done = threading.Event()
    threading.Thread(target=relay_once, args=(lst, name, done), daemon=True).start()
    ch = grpc.insecure_channel('127.0.0.1:%d' % lst.getsockname()[1])
    try:
        body(ch)
    except grpc.RpcError:
        pass
    time.sleep(0.2)
    ch.close()
    done.wait(5)
    lst.close()


def uu(ch, m):
    return ch.unary_unary('/example.EchoService/' + m, request_serializer=None,
                          response_deserializer=None)


run('echo', lambda ch: uu(ch, 'Echo')(b'hello', timeout=5))
run('echo_twice', lambda ch: [uu(ch, 'Echo')(b'a' * 100, timeout=5) for _ in range(2)])
run('gzip', lambda ch: uu(ch, 'Echo')(b'z' * 3000, timeout=5, compression=grpc.Compression.Gzip))
run('metadata', lambda ch: uu(ch, 'Echo')(
    b'm', timeout=5, metadata=[('x-trace-id', 'abc'), ('x-bin', b'\x00\x01'), ('authorization', 'Bearer t')]))
run('unknown_method', lambda ch: uu(ch, 'Nope')(b'', timeout=5))
run('fail', lambda ch: uu(ch, 'Fail')(b'x', timeout=5))
run('stream', lambda ch: ch.stream_unary('/example.EchoService/Echo')(iter([b'1', b'2']), timeout=5))
run('large', lambda ch: uu(ch, 'Echo')(b'L' * 70000, timeout=5))


def cancel(ch):
    uu(ch, 'Echo')(b'warm', timeout=5)  # connected first, so the cancel goes on the wire
    f = uu(ch, 'Echo').future(b'c' * 10, timeout=5)
    f.cancel()
    time.sleep(0.1)


run('cancel', cancel)
