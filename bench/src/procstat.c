/*
 * /proc readers. /proc/PID/stat fields 14 and 15 are utime and stime in
 * clock ticks; the command name (field 2) may contain spaces and
 * parentheses, so parsing starts after the last ')'.
 */
#include "procstat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int procstat_file(pid_t pid, const char *name, char *buf, size_t len)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    else
        snprintf(path, sizeof(path), "/proc/self/%s", name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n ? 0 : -1;
}

static uint64_t procstat_kb_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (!p)
        return 0;
    return strtoull(p + strlen(key), NULL, 10) * 1024;
}

int procstat_read(pid_t pid, procstat *out)
{
    char buf[8192];
    memset(out, 0, sizeof(*out));
    if (procstat_file(pid, "stat", buf, sizeof(buf)) < 0)
        return -1;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* After ')': field 3 (state) onward; utime is field 14, stime 15,
     * num_threads 20. */
    unsigned long long utime = 0, stime = 0;
    long threads = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
                      "%*d %*d %*d %*d %ld", &utime, &stime, &threads) != 3)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    out->cpu_ns = (utime + stime) * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
    out->threads = (uint32_t)threads;
    if (procstat_file(pid, "status", buf, sizeof(buf)) == 0)
        out->rss_bytes = procstat_kb_field(buf, "VmRSS:");
    if (procstat_file(pid, "smaps_rollup", buf, sizeof(buf)) == 0)
        out->pss_bytes = procstat_kb_field(buf, "\nPss:");
    return 0;
}
