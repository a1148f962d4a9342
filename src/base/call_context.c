/* The thread's current served call (call_context.h): a thread-local pointer, set by the server
 * around a handler and read by the client when a call is made on that thread. */
#include "base/call_context.h"

#include <stddef.h>

static _Thread_local const ft_call_context *current;

const ft_call_context *ft_call_context_current(void)
{
    return current;
}

const ft_call_context *ft_call_context_swap(const ft_call_context *ctx)
{
    const ft_call_context *prev = current;
    current = ctx;
    return prev;
}
