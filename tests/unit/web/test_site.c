/*
 * web/site.c: files opened beneath the directory, whichever way the
 * kernel allows (openat2, or the O_NOFOLLOW walk forced here), and the
 * answers: types, validators, 304, 301, 404 and 405.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web/cache.h"
#include "web/site.h"

static char root[256], outside[256];

static void put(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/herald-site-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(outside, sizeof(outside), "/tmp/herald-out-XXXXXX");
    cr_assert_not_null(mkdtemp(outside));
    char p[512];
    put(root, "index.html", "<p>home</p>");
    put(root, "app.js", "1;");
    snprintf(p, sizeof(p), "%s/chat", root);
    mkdir(p, 0755);
    put(p, "index.html", "<p>chat</p>");
    snprintf(p, sizeof(p), "%s/empty", root);
    mkdir(p, 0755);
    put(outside, "secret.txt", "secret");
    snprintf(p, sizeof(p), "%s/out.txt", root);
    char t[512];
    snprintf(t, sizeof(t), "%s/secret.txt", outside);
    cr_assert_eq(symlink(t, p), 0);
    snprintf(p, sizeof(p), "%s/outdir", root);
    cr_assert_eq(symlink(outside, p), 0);
    snprintf(p, sizeof(p), "%s/in.js", root);
    cr_assert_eq(symlink("app.js", p), 0);
    put(root, "big.bin", "");
    snprintf(p, sizeof(p), "%s/big.bin", root);
    cr_assert_eq(truncate(p, 4096), 0);
    snprintf(p, sizeof(p), "%s/fifo", root);
    cr_assert_eq(mkfifo(p, 0644), 0);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, outside);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(web_site, .init = setup, .fini = teardown);

static proto_buf body;

static web_answer get(web_site *s, web_method m, const char *path,
                      const char *inm, const char *ims)
{
    web_request r = { m, path, strlen(path), inm, ims };
    web_answer a;
    memset(&a, 0, sizeof(a));
    a.body = &body;
    web_site_serve(s, &r, &a);
    return a;
}

static web_site *open_site(int walk)
{
    char err[256];
    web_site *s = web_site_open(root, 1024, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    if (walk)
        web_site_force_walk(s);
    proto_buf_init(&body, 0);
    return s;
}

static void done(web_site *s)
{
    web_site_close(s);
    proto_buf_free(&body);
}

static void common_rules(int walk)
{
    web_site *s = open_site(walk);
    web_answer a = get(s, WEB_GET, "/", NULL, NULL);
    cr_assert_eq(a.status, 200);
    cr_assert_str_eq(a.content_type, "text/html; charset=utf-8");
    cr_assert_eq(body.len, 11);
    cr_assert_eq(memcmp(proto_buf_data(&body), "<p>home</p>", 11), 0);
    cr_assert_not_null(strstr(a.headers, "ETag: \""));
    cr_assert_not_null(strstr(a.headers, "Last-Modified: "));
    cr_assert_not_null(strstr(a.headers, "X-Content-Type-Options: nosniff"));
    cr_assert_str_eq(a.cache_control, "no-cache");

    a = get(s, WEB_HEAD, "/chat/", NULL, NULL);
    cr_assert_eq(a.status, 200);
    cr_assert_eq(body.len, 11);              /* the length HEAD tells */

    a = get(s, WEB_GET, "/chat", NULL, NULL);
    cr_assert_eq(a.status, 301);
    cr_assert_str_eq(a.headers, "Location: /chat/\r\n");

    cr_assert_eq(get(s, WEB_GET, "/empty/", NULL, NULL).status, 404);
    cr_assert_eq(get(s, WEB_GET, "/nope.js", NULL, NULL).status, 404);
    cr_assert_eq(get(s, WEB_GET, "/out.txt", NULL, NULL).status, 404);
    cr_assert_eq(get(s, WEB_GET, "/outdir/secret.txt", NULL, NULL).status,
                 404);
    cr_assert_eq(get(s, WEB_GET, "/%2e%2e/x", NULL, NULL).status, 404);
    cr_assert_eq(get(s, WEB_GET, "/big.bin", NULL, NULL).status, 404);
    cr_assert_eq(get(s, WEB_GET, "/fifo", NULL, NULL).status, 404);
    cr_assert_eq(get(s, WEB_GET, "/a%zz", NULL, NULL).status, 400);
    a = get(s, WEB_OTHER, "/app.js", NULL, NULL);
    cr_assert_eq(a.status, 405);
    cr_assert_str_eq(a.headers, "Allow: GET, HEAD\r\n");
    cr_assert_not_null(strstr(proto_buf_data(&body), "\"code\":107"));
    done(s);
}

Test(web_site, rules_with_the_kernels_resolver)
{
    common_rules(0);
}

Test(web_site, rules_with_the_walk)
{
    common_rules(1);
}

Test(web_site, symlink_inside_only_with_openat2)
{
    web_site *s = open_site(0);
    int beneath = strcmp(web_site_resolver(s), "openat2") == 0;
    cr_assert_eq(get(s, WEB_GET, "/in.js", NULL, NULL).status,
                 beneath ? 200 : 404);
    web_site_force_walk(s);
    cr_assert_eq(get(s, WEB_GET, "/in.js", NULL, NULL).status, 404);
    done(s);
}

Test(web_site, revalidation)
{
    web_site *s = open_site(0);
    web_answer a = get(s, WEB_GET, "/app.js", NULL, NULL);
    cr_assert_eq(a.status, 200);
    char etag[WEB_ETAG_MAX + 8], lm[64];
    cr_assert_eq(sscanf(strstr(a.headers, "ETag: ") + 6, "%70[^\r]", etag),
                 1);
    cr_assert_eq(sscanf(strstr(a.headers, "Last-Modified: ") + 15,
                        "%60[^\r]", lm), 1);
    a = get(s, WEB_GET, "/app.js", etag, NULL);
    cr_assert_eq(a.status, 304);
    cr_assert_eq(body.len, 0);
    cr_assert_not_null(strstr(a.headers, etag));
    cr_assert_eq(get(s, WEB_GET, "/app.js", NULL, lm).status, 304);
    cr_assert_eq(get(s, WEB_GET, "/app.js", "\"other\"", lm).status, 200);
    /* a change of the file changes the ETag */
    put(root, "app.js", "2;;");
    cr_assert_eq(get(s, WEB_GET, "/app.js", etag, NULL).status, 200);
    done(s);
}

Test(web_site, a_missing_directory_is_an_error)
{
    char err[256];
    cr_assert_null(web_site_open("/nonexistent/herald", 1024, err,
                                 sizeof(err)));
    cr_assert_not_null(strstr(err, "static_dir"));
}
