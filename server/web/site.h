/*
 * The static site: the files of one directory (static_dir) served by
 * GET and HEAD at / on the main port, by the main port's own HTTP/1.1
 * server (api/listen.c). A request path becomes a relative file name
 * (web/path.h), which is opened beneath the directory's descriptor so that
 * nothing outside it is ever opened, through ".." or through a symlink:
 * with openat2(RESOLVE_BENEATH) where the kernel has it (Linux >= 5.6;
 * symlinks that stay inside are followed), otherwise one component at a
 * time with O_NOFOLLOW (every symlink refused). Only regular files of at
 * most static_max_file bytes are served, with their Content-Type
 * (web/mime.h), an ETag and Last-Modified, and 304 to a conditional
 * request that matches (web/cache.h). Errors have the API's JSON shape.
 *
 * Files are read on the worker's loop, whole, when asked for: they are
 * bounded (static_max_file, at most 16 MiB) and a demo site's files are
 * small and stay in the page cache, so a read costs microseconds; there is
 * no cache of contents in Herald (the browser revalidates with the ETag,
 * and the answer to that is a stat). The site is opened at start and
 * only read afterwards: every worker shares it.
 */
#ifndef HERALD_WEB_SITE_H
#define HERALD_WEB_SITE_H

#include <stddef.h>
#include <stdint.h>

#include <herald/proto.h>

typedef struct web_site web_site;

/* Opens dir (an absolute path: the configuration's real path). NULL with
 * err filled when it cannot be opened. */
web_site *web_site_open(const char *dir, uint32_t max_file, char *err,
                        size_t errlen);
void web_site_close(web_site *s);

/* How names are opened beneath the directory: "openat2" or "walk". */
const char *web_site_resolver(const web_site *s);
/* Tests: open names one component at a time, as without openat2. */
void web_site_force_walk(web_site *s);

typedef enum web_method { WEB_GET, WEB_HEAD, WEB_OTHER } web_method;

typedef struct web_request {
    web_method method;
    const char *path;              /* as sent, before '?' (not decoded) */
    size_t path_len;
    const char *if_none_match;     /* NULL: absent */
    const char *if_modified_since; /* NULL: absent */
} web_request;

#define WEB_HEADERS_MAX 384

typedef struct web_answer {
    int status;                  /* 200, 301, 304, 400, 404, 405 */
    const char *content_type;
    const char *cache_control;   /* "no-cache": revalidate each time */
    char headers[WEB_HEADERS_MAX]; /* whole lines (CRLF each), or "" */
    proto_buf *body;             /* the caller's: emptied, then filled (the
                                    file, or a JSON error) */
} web_answer;

/* Answers req into ans (a HEAD gets the GET's body: the transport sends
 * only its length). */
void web_site_serve(const web_site *s, const web_request *req,
                    web_answer *ans);

#endif
