/*
 * Revalidation of static files (RFC 9110 section 13), pure logic: the
 * validators a file's answer carries (a strong ETag from its inode, size
 * and modification time in nanoseconds; Last-Modified, an HTTP date in
 * seconds) and whether a conditional GET or HEAD is answered 304. When
 * If-None-Match is present it alone decides (If-Modified-Since is then
 * ignored, as the RFC says); an If-Modified-Since that is not an
 * IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", what browsers echo back)
 * is ignored.
 */
#ifndef HERALD_WEB_CACHE_H
#define HERALD_WEB_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define WEB_ETAG_MAX 64      /* with its quotes and the NUL */
#define WEB_DATE_MAX 32      /* an IMF-fixdate and the NUL */

/* "\"<ino>-<size>-<mtime ns>\"" in hex. */
void web_etag(char out[WEB_ETAG_MAX], uint64_t ino, uint64_t size,
              int64_t mtime_ns);

/* t (seconds since the epoch, UTC) as an IMF-fixdate. */
void web_http_date(char out[WEB_DATE_MAX], int64_t t);

/* An IMF-fixdate into *t: 0, or -1 when s is not one. */
int web_http_date_parse(const char *s, int64_t *t);

/* 1 when the client's copy is current (answer 304): if_none_match (a
 * list of entity tags or "*", weak ones compared weakly) or, without it,
 * if_modified_since against mtime_s. NULL: the header is absent. */
int web_not_modified(const char *if_none_match,
                     const char *if_modified_since, const char *etag,
                     int64_t mtime_s);

#endif
