/* The thread's current served call (call_context.h): a thread-local pointer, set by the server
 * around a handler and read by the client when a call is made on that thread; and the thread's
 * note of the pushback a downstream call left for the last served call it noted. */
#include "base/call_context.h"

#include <stdatomic.h>
#include <stddef.h>

static _Thread_local const ft_call_context *current;
static _Thread_local ft_call_note noted;
/* a thread's serials: its prefix (taken once from next_prefix) in the top 24 bits, a count below */
static _Thread_local uint64_t serial_prefix, serial_count;
static atomic_uint_fast64_t next_prefix;

enum { SERIAL_COUNT_BITS = 40 };

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

uint64_t ft_call_context_new_serial(void)
{
    /* a thread that used up its 2^40 serials (a year at 30,000 calls a second) takes a new prefix
     */
    if (serial_prefix == 0 || serial_count == ((uint64_t)1 << SERIAL_COUNT_BITS) - 1) {
        serial_prefix = (atomic_fetch_add(&next_prefix, 1) + 1) << SERIAL_COUNT_BITS;
        serial_count = 0;
    }
    return serial_prefix | ++serial_count;
}

void ft_call_context_note(ft_call_note note)
{
    if (note.serial) noted = note;
}

int32_t ft_call_context_pushback(uint64_t serial)
{
    return serial != 0 && noted.serial == serial ? noted.pushback : 0;
}
