/*
 * The static site (site.h).
 */
#define _GNU_SOURCE
#include "web/site.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "web/cache.h"
#include "web/mime.h"
#include "web/path.h"

/* A file over static_max_file is logged at most this often. */
#define SITE_LOG_EVERY_S 10

struct web_site {
    int dirfd;                    /* O_PATH descriptor of static_dir */
    uint32_t max_file;
    int beneath;                  /* openat2 with RESOLVE_BENEATH works */
    _Atomic int64_t logged_s;     /* last "too large" warning (workers
                                     share the site: an atomic) */
};

/* The flags every file is opened with: O_NONBLOCK so that a FIFO in the
 * directory cannot hold the worker in open(); O_NOCTTY for a terminal. */
#define SITE_FILE_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

static int site_openat2(int dirfd, const char *name)
{
    struct open_how how = {
        .flags = SITE_FILE_FLAGS,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
}

web_site *web_site_open(const char *dir, uint32_t max_file, char *err,
                        size_t errlen)
{
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "static_dir: cannot open directory '%s': %s\n",
                 dir, strerror(errno));
        return NULL;
    }
    web_site *s = mem_calloc(1, sizeof(*s));
    s->dirfd = fd;
    s->max_file = max_file;
    /* Kernels before 5.6, and seccomp filters of some container
     * runtimes, refuse openat2 (ENOSYS, EPERM): then names are walked. */
    int probe = site_openat2(fd, ".");
    if (probe >= 0) {
        s->beneath = 1;
        close(probe);
    }
    atomic_init(&s->logged_s, 0);
    return s;
}

void web_site_close(web_site *s)
{
    if (!s)
        return;
    close(s->dirfd);
    free(s);
}

const char *web_site_resolver(const web_site *s)
{
    return s->beneath ? "openat2" : "walk";
}

void web_site_force_walk(web_site *s)
{
    s->beneath = 0;
}

/* name (relative, no "." or ".." segment: web/path.h) opened one
 * component at a time, never following a symlink. */
static int site_walk(int dirfd, const char *name)
{
    char part[WEB_PATH_MAX];
    int cur = dirfd;
    const char *p = name;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash) {
            int fd = openat(cur, p, SITE_FILE_FLAGS | O_NOFOLLOW);
            int e = errno;
            if (cur != dirfd)
                close(cur);
            errno = e;
            return fd;
        }
        size_t n = (size_t)(slash - p);
        if (n >= sizeof(part)) {
            if (cur != dirfd)
                close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(part, p, n);
        part[n] = '\0';
        int next = openat(cur, part,
                          O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (cur != dirfd)
            close(cur);
        if (next < 0) {
            errno = e;
            return -1;
        }
        cur = next;
        p = slash + 1;
    }
}

static int site_openfile(const web_site *s, const char *name)
{
    return s->beneath ? site_openat2(s->dirfd, name)
                      : site_walk(s->dirfd, name);
}

/* An error in the API's shape; the messages are constants. */
static void site_error(web_answer *ans, int status, int code,
                       const char *message)
{
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", code,
                     message);
    ans->status = status;
    ans->content_type = "application/json";
    ans->cache_control = NULL;
    proto_buf_reset(ans->body);
    proto_buf_append(ans->body, body, (size_t)n);
}

static void site_too_large(const web_site *s, web_answer *ans,
                           const char *name, int64_t size)
{
    web_site *w = (web_site *)s;
    int64_t now = (int64_t)time(NULL);
    int64_t last = atomic_load(&w->logged_s);
    if (now - last >= SITE_LOG_EVERY_S &&
        atomic_compare_exchange_strong(&w->logged_s, &last, now))
        log_warn("static file over static_max_file not served",
                 LOG_STR("file", name), LOG_INT("size", size),
                 LOG_INT("static_max_file", s->max_file));
    site_error(ans, 404, PROTO_E_TOO_LARGE,
               "file larger than static_max_file");
}

/* "/dir" names a folder: the browser is sent to "/dir/", so that the
 * index's relative links resolve inside it. */
static void site_redirect(web_answer *ans, const web_request *req)
{
    int n = snprintf(ans->headers, sizeof(ans->headers),
                     "Location: %.*s/\r\n", (int)req->path_len, req->path);
    if (n < 0 || (size_t)n >= sizeof(ans->headers)) {
        site_error(ans, 404, PROTO_E_BAD_REQUEST, "not found");
        return;
    }
    site_error(ans, 301, PROTO_E_BAD_REQUEST, "a folder: add a slash");
    ans->status = 301;
}

/* Reads the whole file (size bytes as fstat saw them) into ans->body: 0,
 * or -1 on a read error. A file that shrank meanwhile is sent as read. */
static int site_read(int fd, int64_t size, proto_buf *body)
{
    char chunk[65536];
    int64_t left = size;
    proto_buf_reset(body);
    while (left > 0) {
        size_t want = left < (int64_t)sizeof(chunk) ? (size_t)left
                                                    : sizeof(chunk);
        ssize_t got = read(fd, chunk, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        proto_buf_append(body, chunk, (size_t)got);
        left -= got;
    }
    return 0;
}

/* The validators and the type of an opened regular file. */
static void site_headers(web_answer *ans, const struct stat *st,
                         const char *etag)
{
    char date[WEB_DATE_MAX];
    web_http_date(date, (int64_t)st->st_mtim.tv_sec);
    snprintf(ans->headers, sizeof(ans->headers),
             "ETag: %s\r\nLast-Modified: %s\r\n"
             "X-Content-Type-Options: nosniff\r\n", etag, date);
    ans->cache_control = "no-cache";
}

void web_site_serve(const web_site *s, const web_request *req,
                    web_answer *ans)
{
    char name[WEB_PATH_MAX];
    ans->headers[0] = '\0';
    if (req->method == WEB_OTHER) {
        snprintf(ans->headers, sizeof(ans->headers), "Allow: GET, HEAD\r\n");
        site_error(ans, 405, PROTO_E_BAD_REQUEST,
                   "method not allowed (GET or HEAD)");
        return;
    }
    web_path_status ps = web_path_parse(req->path, req->path_len, name,
                                        sizeof(name));
    if (ps == WEB_PATH_MALFORMED) {
        site_error(ans, 400, PROTO_E_BAD_REQUEST, "malformed path");
        return;
    }
    if (ps != WEB_PATH_OK) {
        site_error(ans, 404, PROTO_E_BAD_REQUEST, "not found");
        return;
    }
    int fd = site_openfile(s, name);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        site_error(ans, 404, PROTO_E_BAD_REQUEST, "not found");
        return;
    }
    if (S_ISDIR(st.st_mode) && req->path[req->path_len - 1] != '/') {
        close(fd);
        site_redirect(ans, req);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        site_error(ans, 404, PROTO_E_BAD_REQUEST, "not found");
        return;
    }
    if (st.st_size > (off_t)s->max_file) {
        close(fd);
        site_too_large(s, ans, name, (int64_t)st.st_size);
        return;
    }
    char etag[WEB_ETAG_MAX];
    web_etag(etag, (uint64_t)st.st_ino, (uint64_t)st.st_size,
             (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
    if (web_not_modified(req->if_none_match, req->if_modified_since, etag,
                         (int64_t)st.st_mtim.tv_sec)) {
        close(fd);
        site_headers(ans, &st, etag);
        ans->status = 304;
        ans->content_type = web_mime_type(name);
        proto_buf_reset(ans->body);
        return;
    }
    int rc = site_read(fd, (int64_t)st.st_size, ans->body);
    close(fd);
    if (rc < 0) {
        site_error(ans, 404, PROTO_E_BAD_REQUEST, "not found");
        return;
    }
    site_headers(ans, &st, etag);
    ans->status = 200;
    ans->content_type = web_mime_type(name);
}
