/* A real gRPC C++ peer for ftrpc's gRPC tests and bench_echo (gRPC C++'s generic API: no generated
 * code). The one C++ file of the project: it exists to hold ftrpc to the reference
 * implementation, and speaks the same command line and prints the same lines as
 * tests/integration/grpc_peer.py (grpcio), so that one test body drives either peer.
 *
 * server [--delay-ms N] [--port P]   serves example.EchoService on 127.0.0.1 (port P, default a
 *     free one), prints "listening on 127.0.0.1:PORT" first, then "cancelled METHOD" each time a
 *     call is cancelled by its client while its handler waits. Methods: Echo (answers the request,
 *     after N ms when --delay-ms), Fail (fails with the status named by the request, e.g.
 *     "NOT_FOUND", and the details "failed with NOT_FOUND"), Slow (waits up to 5 s for the client
 *     to give up). Anything else: UNIMPLEMENTED. The callback API (CallbackGenericService), on gRPC
 *     C++'s own threads: the server gRPC recommends, and the one bench_echo measures.
 *
 * client TARGET [--ca FILE] [--token T] CASE...   runs each case against an ftrpc server and
 *     prints one line per case: "CASE STATUS DETAIL" (STATUS is the grpc::StatusCode's name as
 *     grpcio spells it; DETAIL the answer's bytes on OK, else the status details). Cases: echo,
 *     gzip, unknown, unknown_service, fail_WHAT, deadline, remaining, meta, cancel.
 *
 * bench TARGET --callers N --seconds S [--warmup W] [--bytes B]   a closed-loop echo client
 *     (bench_echo's gRPC C++ rows): ONE channel (one connection), N calls outstanding, each
 *     re-issued from its completion; counts the S seconds after W seconds of warm-up, then prints
 *     "qps Q calls C errors E total T" (T: the calls of warm-up and measure; exit 1 when a call
 *     failed). */
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace
{

const char *const SVC = "/example.EchoService/";

const char *const CODE_NAME[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
const int NCODES = sizeof CODE_NAME / sizeof CODE_NAME[0];

std::string to_string(const grpc::ByteBuffer &b)
{
    std::vector<grpc::Slice> slices;
    std::string s;
    if (!b.Dump(&slices).ok()) return s;
    for (const grpc::Slice &sl : slices)
        s.append(reinterpret_cast<const char *>(sl.begin()), sl.size());
    return s;
}

grpc::ByteBuffer to_buffer(const std::string &s)
{
    grpc::Slice sl(s);
    return grpc::ByteBuffer(&sl, 1);
}

/* ---- server ---- */

int g_delay_ms;

/* One call: reads the request, answers at once, or after a wait that the client's cancellation
 * cuts short (an Alarm, so that no thread blocks). Deletes itself when gRPC is done with it. */
class Call : public grpc::ServerGenericBidiReactor
{
  public:
    explicit Call(grpc::GenericCallbackServerContext *ctx)
    {
        const std::string &m = ctx->method();
        if (m.compare(0, strlen(SVC), SVC) != 0) {
            Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Method not found!"));
            return;
        }
        name_ = m.substr(strlen(SVC));
        if (name_ != "Echo" && name_ != "Fail" && name_ != "Slow") {
            Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Method not found!"));
            return;
        }
        StartRead(&req_);
    }

    void OnReadDone(bool ok) override
    {
        if (!ok) {
            Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
            return;
        }
        if (name_ == "Fail") {
            std::string what = to_string(req_);
            int code = 2; /* UNKNOWN for a name it does not know */
            for (int i = 1; i < NCODES; i++)
                if (what == CODE_NAME[i]) code = i;
            Finish(grpc::Status(static_cast<grpc::StatusCode>(code), "failed with " + what));
        } else if (name_ == "Slow") {
            wait_then_answer(5000, "slow");
        } else if (g_delay_ms > 0) {
            wait_then_answer(g_delay_ms, to_string(req_));
        } else {
            resp_ = req_;
            StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
        }
    }

    void OnCancel() override
    {
        std::lock_guard<std::mutex> g(lock_);
        if (waiting_) {
            std::printf("cancelled %s\n", name_.c_str());
            std::fflush(stdout);
            alarm_.Cancel();
        }
    }

    void OnWriteDone(bool) override {}
    void OnDone() override
    {
        delete this;
    }

  private:
    void wait_then_answer(int ms, std::string answer)
    {
        std::lock_guard<std::mutex> g(lock_);
        waiting_ = true;
        alarm_.Set(std::chrono::system_clock::now() + std::chrono::milliseconds(ms),
                   [this, answer](bool fired) {
                       {
                           std::lock_guard<std::mutex> g2(lock_);
                           waiting_ = false;
                       }
                       if (!fired) {
                           Finish(grpc::Status::CANCELLED);
                           return;
                       }
                       resp_ = to_buffer(answer);
                       StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
                   });
    }

    std::string name_;
    grpc::ByteBuffer req_, resp_;
    std::mutex lock_; /* guards waiting_ against OnCancel on another thread */
    bool waiting_ = false;
    grpc::Alarm alarm_;
};

class Service : public grpc::CallbackGenericService
{
    grpc::ServerGenericBidiReactor *CreateReactor(grpc::GenericCallbackServerContext *ctx) override
    {
        return new Call(ctx);
    }
};

int run_server(int argc, char **argv)
{
    int port = 0;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--delay-ms"))
            g_delay_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
    }
    Service service;
    grpc::ServerBuilder builder;
    int bound = 0;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                             &bound);
    builder.RegisterCallbackGenericService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || bound <= 0) {
        std::fprintf(stderr, "grpc_cpp_peer: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    std::printf("listening on 127.0.0.1:%d\n", bound);
    std::fflush(stdout);
    server->Wait(); /* until SIGTERM or SIGKILL */
    return 0;
}

/* ---- client ---- */

std::shared_ptr<grpc::Channel> make_channel(const std::string &target, const char *ca)
{
    grpc::ChannelArguments args;
    if (!ca) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    std::ifstream f(ca);
    std::stringstream pem;
    pem << f.rdbuf();
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = pem.str();
    args.SetSslTargetNameOverride("localhost");
    return grpc::CreateCustomChannel(target, grpc::SslCredentials(o), args);
}

/* One unary call through the generic stub, waited for. */
grpc::Status unary(grpc::GenericStub &stub, grpc::ClientContext *ctx, const std::string &method,
                   const std::string &req, std::string *out)
{
    grpc::ByteBuffer rq = to_buffer(req), rs;
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    grpc::Status st;
    stub.UnaryCall(ctx, method, grpc::StubOptions(), &rq, &rs, [&](grpc::Status s) {
        std::lock_guard<std::mutex> g(m);
        st = s;
        done = true;
        cv.notify_one();
    });
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return done; });
    *out = to_string(rs);
    return st;
}

std::string status_line(const std::string &c, const grpc::Status &st, const std::string &out)
{
    int code = st.error_code();
    const char *name = code >= 0 && code < NCODES ? CODE_NAME[code] : "?";
    return c + " " + name + " " + (st.ok() ? out : st.error_message());
}

int run_client(int argc, char **argv)
{
    if (argc < 1) return 2;
    std::string target = argv[0];
    const char *ca = nullptr, *token = nullptr;
    std::vector<std::string> cases;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ca") && i + 1 < argc)
            ca = argv[++i];
        else if (!strcmp(argv[i], "--token") && i + 1 < argc)
            token = argv[++i];
        else
            cases.push_back(argv[i]);
    }
    std::shared_ptr<grpc::Channel> ch = make_channel(target, ca);
    grpc::GenericStub stub(ch);
    for (const std::string &c : cases) {
        grpc::ClientContext ctx;
        if (token) ctx.AddMetadata("authorization", std::string("Bearer ") + token);
        auto in = [](int ms) {
            return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
        };
        ctx.set_deadline(in(c == "deadline" ? 300 : c == "remaining" ? 5000 : 10000));
        std::string out, line;
        if (c == "echo") {
            line = status_line(c, unary(stub, &ctx, std::string(SVC) + "Echo", "hello grpc", &out),
                               out);
        } else if (c == "gzip") {
            ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
            grpc::Status st =
                unary(stub, &ctx, std::string(SVC) + "Echo", std::string(4000, 'z'), &out);
            line = st.ok() ? c + " OK " + std::to_string(out.size()) + " bytes"
                           : status_line(c, st, out);
        } else if (c == "unknown") {
            line = status_line(c, unary(stub, &ctx, std::string(SVC) + "NoSuchMethod", "x", &out),
                               out);
        } else if (c == "unknown_service") {
            line = status_line(c, unary(stub, &ctx, "/nope.Service/Echo", "x", &out), out);
        } else if (c.compare(0, 5, "fail_") == 0) {
            line = status_line(c, unary(stub, &ctx, std::string(SVC) + "Fail", c.substr(5), &out),
                               out);
        } else if (c == "deadline") {
            line = status_line(c, unary(stub, &ctx, std::string(SVC) + "Slow", "x", &out), out);
        } else if (c == "remaining") {
            line =
                status_line(c, unary(stub, &ctx, std::string(SVC) + "Remaining", "x", &out), out);
        } else if (c == "meta") {
            ctx.AddMetadata("x-trace-id", "abc123");
            ctx.AddMetadata("x-other", "y");
            line = status_line(c, unary(stub, &ctx, std::string(SVC) + "Meta", "x-trace-id", &out),
                               out);
        } else if (c == "cancel") {
            std::thread canceller([&ctx] {
                std::this_thread::sleep_for(std::chrono::milliseconds(300));
                ctx.TryCancel();
            });
            unary(stub, &ctx, std::string(SVC) + "Slow", "x", &out);
            canceller.join();
            line = c + " sent";
        } else {
            line = c + " ? unknown case";
        }
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    }
    return 0;
}

/* ---- closed-loop bench client ---- */

struct Bench {
    grpc::GenericStub *stub;
    std::string method, payload;
    std::atomic<bool> stop{false};
    std::atomic<long> calls{0}, errors{0};
    std::mutex m;
    std::condition_variable cv;
    int outstanding = 0;
};

/* One caller: a call, and on its completion the next, until told to stop. */
struct Caller {
    Bench *b;
    grpc::ByteBuffer req, resp;
    /* two contexts in turn: the one whose completion issues the next call stays alive until the
     * completion after */
    std::unique_ptr<grpc::ClientContext> ctx[2];
    int turn = 0;

    void issue()
    {
        turn ^= 1;
        ctx[turn].reset(new grpc::ClientContext);
        resp.Clear();
        b->stub->UnaryCall(ctx[turn].get(), b->method, grpc::StubOptions(), &req, &resp,
                           [this](grpc::Status st) { done(st); });
    }
    void done(const grpc::Status &st)
    {
        if (st.ok() && resp.Length() == b->payload.size())
            b->calls++;
        else
            b->errors++;
        if (!b->stop.load()) {
            issue();
            return;
        }
        std::lock_guard<std::mutex> g(b->m);
        if (--b->outstanding == 0) b->cv.notify_one();
    }
};

int run_bench(int argc, char **argv)
{
    if (argc < 1) return 2;
    int callers = 1, bytes = 16;
    double seconds = 1, warmup = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--callers"))
            callers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--bytes"))
            bytes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atof(argv[i + 1]);
    }
    if (callers < 1 || callers > 4096 || seconds <= 0 || warmup < 0 || bytes < 0) {
        std::fprintf(stderr,
                     "grpc_cpp_peer bench: bad --callers, --seconds, --warmup or --bytes\n");
        return 2;
    }
    std::shared_ptr<grpc::Channel> ch = make_channel(argv[0], nullptr);
    grpc::GenericStub stub(ch);
    Bench b;
    b.stub = &stub;
    b.method = std::string(SVC) + "Echo";
    b.payload.assign(static_cast<size_t>(bytes), 'e');
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
        std::fprintf(stderr, "grpc_cpp_peer bench: cannot connect to %s\n", argv[0]);
        return 1;
    }
    std::vector<Caller> cs(static_cast<size_t>(callers));
    b.outstanding = callers;
    auto t0 = std::chrono::steady_clock::now();
    for (Caller &c : cs) {
        c.b = &b;
        c.req = to_buffer(b.payload);
        c.issue();
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
    long calls0 = b.calls.load();
    t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    long calls = b.calls.load() - calls0;
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    b.stop = true;
    std::unique_lock<std::mutex> g(b.m);
    b.cv.wait(g, [&] { return b.outstanding == 0; });
    std::printf("qps %.0f calls %ld errors %ld total %ld\n", static_cast<double>(calls) / took,
                calls, b.errors.load(), b.calls.load());
    return b.errors.load() ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "server")) return run_server(argc - 2, argv + 2);
    if (argc >= 3 && !strcmp(argv[1], "client")) return run_client(argc - 2, argv + 2);
    if (argc >= 3 && !strcmp(argv[1], "bench")) return run_bench(argc - 2, argv + 2);
    std::fprintf(
        stderr,
        "usage: grpc_cpp_peer server [--delay-ms N] [--port P]\n"
        "       grpc_cpp_peer client TARGET [--ca FILE] [--token T] CASE...\n"
        "       grpc_cpp_peer bench TARGET --callers N --seconds S [--warmup W] [--bytes B]\n");
    return 2;
}
