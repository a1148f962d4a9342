/* Linked into every executable of a ThreadSanitizer build (tests and the CLI;
 * tests/CMakeLists.txt), never into the library or a normal build.
 *
 * Debian's libuv is not instrumented and closes descriptors with syscall(SYS_close, fd) (a close
 * that is not a cancellation point), which no TSan interceptor sees; it creates and uses them
 * through intercepted calls (socket, accept4, epoll_ctl). TSan then believes a descriptor libuv
 * closed is still open, and when the kernel hands the number out again (to opendir on the dir://
 * watcher thread, say) it reports a "data race" on "file descriptor N" between two threads that
 * never shared it. libuv built with TSan tells it of these closes with the sanitizer syscall hooks;
 * this file does the same for the packaged libuv, by interposing syscall(): a close goes through
 * the hooks, every other call straight to libc. Nothing is suppressed: TSan sees one more event.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include <sanitizer/linux_syscall_hooks.h>

typedef long (*syscall_fn)(long, ...);

__attribute__((visibility("default"))) long syscall(long nr, ...)
{
    /* looked up by whichever thread comes first; every thread finds the same pointer */
    static _Atomic(syscall_fn) real_fn;
    syscall_fn real = atomic_load_explicit(&real_fn, memory_order_relaxed);
    if (!real) {
        real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
        atomic_store_explicit(&real_fn, real, memory_order_relaxed);
    }
    /* As libc's syscall(): six argument registers are read whatever the call passed. */
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_close) {
        __sanitizer_syscall_pre_close(a[0]);
        long rc = real(nr, a[0]);
        __sanitizer_syscall_post_close(rc, a[0]);
        return rc;
    }
    return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
