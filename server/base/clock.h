/*
 * Milliseconds of the two clocks the threads outside the worker loops use
 * (a worker has its loop's clock and server_now_ms): monotonic for
 * deadlines and schedules, wall for what is shown to people and backends.
 */
#ifndef HERALD_BASE_CLOCK_H
#define HERALD_BASE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
