/*
 * Validators and conditional requests (cache.h).
 */
#include "web/cache.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const days[7] = { "Sun", "Mon", "Tue", "Wed", "Thu",
                                     "Fri", "Sat" };
static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May",
                                        "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec" };

void web_etag(char out[WEB_ETAG_MAX], uint64_t ino, uint64_t size,
              int64_t mtime_ns)
{
    snprintf(out, WEB_ETAG_MAX, "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"",
             ino, size, (uint64_t)mtime_ns);
}

void web_http_date(char out[WEB_DATE_MAX], int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, WEB_DATE_MAX, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(out, WEB_DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

int web_http_date_parse(const char *s, int64_t *t)
{
    /* "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, fixed places */
    if (strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' ||
        s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
        strcmp(s + 25, " GMT") != 0)
        return -1;
    int mday, year, hh, mm, ss, mon = -1;
    if (digits(s + 5, 2, &mday) || digits(s + 12, 4, &year) ||
        digits(s + 17, 2, &hh) || digits(s + 20, 2, &mm) ||
        digits(s + 23, 2, &ss))
        return -1;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, months[i], 3) == 0)
            mon = i;
    if (mon < 0 || mday < 1 || mday > 31 || year < 1970 || hh > 23 ||
        mm > 59 || ss > 59)
        return -1;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = mon, .tm_mday = mday,
                     .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
    time_t tt = timegm(&tm);
    /* timegm moves "31 Feb" into March: such a date is not one */
    struct tm back;
    if (!gmtime_r(&tt, &back) || back.tm_mday != mday || back.tm_mon != mon)
        return -1;
    *t = (int64_t)tt;
    return 0;
}

/* Whether the list of entity tags in inm holds etag (weak comparison: a
 * "W/" prefix is ignored on either side) or is "*". */
static int etag_listed(const char *inm, const char *etag)
{
    const char *p = inm;
    if (strncmp(etag, "W/", 2) == 0)
        etag += 2;
    size_t elen = strlen(etag);
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return 0;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (*p != '"')
            return 0;              /* not a list of entity tags */
        const char *end = strchr(p + 1, '"');
        if (!end)
            return 0;
        size_t n = (size_t)(end - p) + 1;
        if (n == elen && memcmp(p, etag, n) == 0)
            return 1;
        p = end + 1;
    }
}

int web_not_modified(const char *if_none_match,
                     const char *if_modified_since, const char *etag,
                     int64_t mtime_s)
{
    if (if_none_match)
        return etag_listed(if_none_match, etag);
    int64_t since;
    if (if_modified_since &&
        web_http_date_parse(if_modified_since, &since) == 0)
        return mtime_s <= since;
    return 0;
}
