/* The context a served call hands to the calls its handler makes: its deadline and whether it is
 * a retry (docs/overload-client.md, Deadline propagation and Chain-stop), and the way back: a mark
 * that a call made on its behalf spent its retries, so that the served call's error answer tells
 * its own caller not to retry either (pushback -1).
 *
 * The server (server/) fills one per served call and makes it the thread's current context while
 * the handler runs, on an IO thread or a worker; the client (client/) reads it when a call is made,
 * either from the thread (ft_call_context_current) or from an explicit parent
 * (ftrpc_call_options.parent, read through ft_call_context_of). It lives in base/ so that client/
 * need not include server/: a served call begins with its ft_call_context (server.c asserts it),
 * which is all the client knows of it.
 *
 * The mark travels by serial, never by pointer: a call made for a served call may end after that
 * served call was answered and freed. The client notes the serial on the thread that learns the
 * outcome — the caller's thread for a sync call, the loop's thread just before an async call's
 * callback — and the server reads it on the thread that answers. One serial a thread (the last
 * noted); serials are never reused, so a stale one matches nothing.
 *
 * Not here: what a call does with the context (client/call.c), nor any clock (times are the
 * monotonic ns of base/clock.h).
 */
#ifndef FT_BASE_CALL_CONTEXT_H
#define FT_BASE_CALL_CONTEXT_H

#include <stdint.h>

typedef struct ft_call_context {
    int64_t deadline_ns; /* monotonic; 0: the served call has no deadline */
    int32_t attempt;     /* ftrpc_attempt of the request served: 0 = a first attempt */
    int32_t reserved;
    uint64_t serial; /* the served call's, unique in the process (ft_call_context_new_serial) */
} ft_call_context;

/* The served call the current thread runs a handler for, or NULL. Any thread (thread-local). */
const ft_call_context *ft_call_context_current(void);
/* Makes ctx (may be NULL) the thread's current context and returns the one it replaces, which the
 * caller restores when its handler returns (handlers may nest: a blocking call's callback). */
const ft_call_context *ft_call_context_swap(const ft_call_context *ctx);
/* The context at the start of a served call (an ftrpc_server_call *; NULL gives NULL). */
static inline const ft_call_context *ft_call_context_of(const void *served_call)
{
    return (const ft_call_context *)served_call;
}

/* A serial no other served call of the process has had (nor will): never 0. Any thread; no lock
 * (a thread-local counter under a per-thread prefix). */
uint64_t ft_call_context_new_serial(void);
/* What a call made for a served call leaves for that served call's answer: its serial (0: nothing)
 * and the pushback the answer carries: -1 when the call ended with an RPC error after it spent
 * its retries (chain-stop), > 0 when it ended with an overload refusal (ELIMIT) that held its
 * endpoint that many ms, so that the served call's own ELIMIT holds its caller too instead of
 * tripping the caller's breaker and throttle one hop up (docs/overload-client.md, Pushback). */
typedef struct ft_call_note {
    uint64_t serial;
    int32_t pushback;
} ft_call_note;
/* Notes it on this thread (a serial of 0: nothing to note, the last note stays). Any thread. */
void ft_call_context_note(ft_call_note note);
/* The pushback this thread noted last when that note is for `serial`, else 0. Any thread. */
int32_t ft_call_context_pushback(uint64_t serial);
/* Chain-stop's note alone: a pushback of -1. */
static inline void ft_call_context_note_retried(uint64_t serial)
{
    ft_call_context_note((ft_call_note){serial, -1});
}
/* 1 when this thread noted ft_call_context_note_retried(serial) last. Any thread. */
static inline int ft_call_context_retried(uint64_t serial)
{
    return ft_call_context_pushback(serial) == -1;
}

#endif
