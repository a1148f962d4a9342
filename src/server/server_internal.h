/* Internals of ftrpc_server shared by the files of src/server/. */
#ifndef FT_SERVER_INTERNAL_H
#define FT_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/idmap.h"
#include "base/iobuf.h"
#include "base/list.h"
#include "base/workpool.h"
#include "ftrpc/server.h"
#include "io/conn.h"
#include "io/listener.h"
#include "io/loop.h"
#include "naming/naming.h"

enum ft_server_state { FT_SERVER_NEW, FT_SERVER_RUNNING, FT_SERVER_STOPPING, FT_SERVER_STOPPED };

typedef struct ft_method {
    char *service;
    char *method;
    ftrpc_handler handler;
    void *arg;
    ftrpc_method_options opts;
    atomic_int concurrency; /* calls of this method in flight */
    atomic_llong calls;     /* handled (handler started) */
    atomic_llong rejected;  /* ELIMIT, deadline passed, stopping */
    atomic_llong canceled_unstarted; /* cancelled while queued: never executed */
} ft_method;

/* One accepted connection; owned by its loop (touched on that loop only). */
typedef struct ft_session {
    ft_list node; /* in server->loop_sessions[loop->index] */
    ft_conn *conn;
    struct ftrpc_server *server;
    ft_loop *loop;
    ft_idmap calls; /* correlation id -> ftrpc_server_call in flight (for cancellation) */
    ft_timer idle_timer;  /* closes a connection that sends nothing for idle_timeout_ms */
    ft_timer read_timer;  /* closes one whose started frame does not complete in read_timeout_ms */
    int authenticated;
    char identity[128];
} ft_session;

struct ftrpc_server {
    ftrpc_runtime *rt;
    ftrpc_server_options opts;
    ft_method **methods; /* registration order */
    size_t nmethods;
    ft_method **table; /* open addressing on (service, method); read-only once running */
    size_t table_mask;
    ft_listener *listener;
    int port;
    ft_registrar *registrar; /* NULL when not registered */
    _Atomic int state;
    atomic_int inflight; /* calls dispatched and not yet finished */
    atomic_int sessions; /* open connections */
    ft_list *loop_sessions; /* one list per loop, touched on that loop only */
    atomic_uint next_loop;
    ft_workpool pool;
    int pool_started;
    char *auth_token; /* copies of the option strings the server keeps */
    char *register_url, *register_addr, *register_tags;
    atomic_llong connections_refused, idle_closed, read_timeouts, auth_failures;
    pthread_mutex_t stop_lock; /* guards nothing but the condition below */
    pthread_cond_t stop_cond;  /* signalled when inflight or sessions reach 0 while stopping */
};

struct ftrpc_server_call {
    ft_task task; /* posts a reply made on another thread back to the loop */
    ft_job job;   /* queues the handler on the worker pool */
    struct ftrpc_server *server;
    ft_method *method;
    ft_conn *conn; /* referenced until the call is finished */
    ft_session *session; /* NULL once the connection closed (the session is gone) */
    ft_loop *loop;
    atomic_int canceled;
    char identity[128]; /* the connection's, copied: the call may outlive the session */
    int64_t correlation_id;
    int64_t deadline_ns; /* 0: the caller sent no timeout */
    ft_iobuf request;
    ft_iobuf attachment;
    ft_iobuf reply; /* the packed response frame */
};

#endif
