/* Futex-backed one-shot event (see event.h). */
#include "base/event.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "ftrpc/common.h"

static long futex(atomic_int *addr, int op, int val, const struct timespec *ts)
{
    return syscall(SYS_futex, (int *)addr, op, val, ts, NULL, 0);
}

/* Computed on first use by whichever thread waits first; several may race to compute it, and all
 * compute the same value, so relaxed atomics suffice (a plain int64_t here was a data race). */
static _Atomic int64_t spin_ns = -1;

int64_t ft_event_spin_ns(void)
{
    int64_t v = atomic_load_explicit(&spin_ns, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("FTRPC_SPIN_US");
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        /* Spinning only pays when a core is free to spin on: with two or fewer, the spinner takes
         * the core the IO thread needs to produce the answer (measured: docs/performance.md). */
        v = e ? atoll(e) * 1000 : (cores > 2 ? 20000 : 0);
        atomic_store_explicit(&spin_ns, v, memory_order_relaxed);
    }
    return v;
}

void ft_event_set(ft_event *ev)
{
    if (atomic_exchange_explicit(&ev->state, 1, memory_order_acq_rel) == 2)
        futex(&ev->state, FUTEX_WAKE_PRIVATE, 1, NULL);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

int ft_event_wait(ft_event *ev, int64_t timeout_ns)
{
    int64_t start = ft_now_ns();
    int64_t spin = ft_event_spin_ns();
    if (timeout_ns >= 0 && spin > timeout_ns) spin = timeout_ns; /* never spin past the deadline */
    if (spin > 0) {
        for (int i = 0;; i++) {
            if (atomic_load_explicit(&ev->state, memory_order_acquire) == 1) return 0;
            if ((i & 63) == 63 && ft_now_ns() - start > spin) break;
            cpu_relax();
        }
    }
    for (;;) {
        int expected = 0;
        if (!atomic_compare_exchange_strong(&ev->state, &expected, 2) && expected == 1) return 0;
        struct timespec ts, *tsp = NULL;
        if (timeout_ns >= 0) {
            int64_t left = timeout_ns - (ft_now_ns() - start);
            if (left <= 0) {
                /* take back the sleeping mark unless the setter came first */
                expected = 2;
                if (atomic_compare_exchange_strong(&ev->state, &expected, 0))
                    return FTRPC_ERPCTIMEDOUT;
                return 0;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        futex(&ev->state, FUTEX_WAIT_PRIVATE, 2, tsp);
        if (atomic_load_explicit(&ev->state, memory_order_acquire) == 1) return 0;
    }
}
