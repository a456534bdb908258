/*
 * Process sampling for benchmark reports: CPU time (utime + stime) and
 * memory (RSS, and PSS, which splits shared pages fairly between several
 * server processes) read from /proc. Used for the bench itself (to show it
 * was not the bottleneck) and for servers given with --server-pid.
 */
#ifndef HERALD_BENCH_PROCSTAT_H
#define HERALD_BENCH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

typedef struct procstat {
    uint64_t cpu_ns;     /* user + system CPU time */
    uint64_t rss_bytes;  /* VmRSS */
    uint64_t pss_bytes;  /* Pss from smaps_rollup, 0 if unavailable */
    uint32_t threads;
} procstat;

/* Samples process pid (0 = this process). Returns 0, or -1 when the
 * process does not exist or /proc cannot be read. */
int procstat_read(pid_t pid, procstat *out);

#endif
