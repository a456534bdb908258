/* Unit tests of bench/src/procstat.c against this very process. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"

Test(procstat, reads_self_and_sees_cpu_and_memory_grow)
{
    procstat a, b;
    cr_assert_eq(procstat_read(0, &a), 0);
    cr_assert_gt(a.rss_bytes, 0);
    cr_assert_geq(a.threads, 1);

    /* Burn ~60 ms of CPU and touch 32 MiB. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    volatile uint64_t x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i * 2654435761u;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    } while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 60000000L);
    size_t n = 32u << 20;
    char *m = malloc(n);
    cr_assert_not_null(m);
    memset(m, 1, n);

    cr_assert_eq(procstat_read(getpid(), &b), 0);
    cr_assert_geq(b.cpu_ns, a.cpu_ns + 40000000ull, "cpu %llu -> %llu",
                  (unsigned long long)a.cpu_ns, (unsigned long long)b.cpu_ns);
    cr_assert_geq(b.rss_bytes, a.rss_bytes + (24u << 20));
    if (b.pss_bytes)
        cr_assert_geq(b.pss_bytes, 24u << 20);
    free(m);
}

Test(procstat, missing_process)
{
    procstat p;
    cr_assert_eq(procstat_read(0x7ffffff0, &p), -1);
}
