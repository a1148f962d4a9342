/* Blocks cached by a thread that exits go back to malloc: a thread that builds and frees buffers
 * and then ends leaks nothing (the ASan build's leak check fails this test otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "base/iobuf.h"

static void *fill_and_free(void *arg)
{
    (void)arg;
    ft_block *blocks[8];
    for (int i = 0; i < 8; i++)
        blocks[i] = ft_block_new(16);
    for (int i = 0; i < 8; i++)
        ft_block_release(blocks[i]); /* cached by this thread */
    return NULL;
}

static void blocks_cached_by_an_exiting_thread_are_freed(void **state)
{
    (void)state;
    for (int t = 0; t < 4; t++) {
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, fill_and_free, NULL), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blocks_cached_by_an_exiting_thread_are_freed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
