/* The decay of a peak-EWMA figure (Finagle's PeakEwma): after dt of time its weight is
 * e^(-dt / tau). One formula for the health module, which folds samples in with it, and for p2c,
 * which decays a figure nobody has sampled lately at read time. */
#ifndef FTRPC_CLUSTER_EWMA_DECAY_H
#define FTRPC_CLUSTER_EWMA_DECAY_H

#include <math.h>
#include <stdint.h>

/* The weight left to a figure dt_ns old, with time constant tau_ns (> 0): 1 when dt_ns <= 0. */
static inline double ft_ewma_decay_weight(int64_t dt_ns, int64_t tau_ns)
{
    return dt_ns > 0 ? exp(-(double)dt_ns / (double)tau_ns) : 1.0;
}

#endif
