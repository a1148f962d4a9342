/* Bounded series of per-second figures (see series.h). */
#include "metrics/series.h"

#include <stdlib.h>

#include "base/clock.h"
#include "ftrpc/common.h"

int ft_series_init(ft_series *s, size_t capacity)
{
    if (capacity == 0) return FTRPC_EINVAL;
    *s = (ft_series){.capacity = capacity};
    s->points = calloc(capacity, sizeof *s->points);
    if (!s->points) return FTRPC_ENOMEM;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s->points);
        s->points = NULL;
        return FTRPC_ENOMEM;
    }
    return 0;
}

void ft_series_fini(ft_series *s)
{
    if (!s->points) return;
    pthread_mutex_destroy(&s->lock);
    free(s->points);
    s->points = NULL;
}

static uint64_t growth(uint64_t now, uint64_t before)
{
    return now > before ? now - before : 0;
}

void ft_series_sample(ft_series *s, int64_t now_ns, uint64_t calls, uint64_t errors, int64_t p99_ns)
{
    pthread_mutex_lock(&s->lock);
    if (s->primed && now_ns <= s->base_ns) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (s->primed) {
        double seconds = (double)(now_ns - s->base_ns) / (double)FT_NS_PER_SEC;
        s->points[s->next] = (ft_series_point){
            .at_ns = now_ns,
            .calls_per_s = (double)growth(calls, s->base_calls) / seconds,
            .errors_per_s = (double)growth(errors, s->base_errors) / seconds,
            .p99_ns = p99_ns,
        };
        s->next = (s->next + 1) % s->capacity;
        if (s->count < s->capacity) s->count++;
    }
    s->primed = 1;
    s->base_ns = now_ns;
    s->base_calls = calls;
    s->base_errors = errors;
    pthread_mutex_unlock(&s->lock);
}

size_t ft_series_points(ft_series *s, ft_series_point *out, size_t cap)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->count < cap ? s->count : cap;
    /* the newest n points end just before `next` */
    size_t first = (s->next + s->capacity - n) % s->capacity;
    for (size_t i = 0; i < n; i++)
        out[i] = s->points[(first + i) % s->capacity];
    pthread_mutex_unlock(&s->lock);
    return n;
}
