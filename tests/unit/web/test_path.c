/*
 * web/path.c: request paths of the static site, decoded and checked
 * before any file is opened.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "web/path.h"

static char out[WEB_PATH_MAX];

static web_path_status parse(const char *p)
{
    memset(out, 'x', sizeof(out));
    return web_path_parse(p, strlen(p), out, sizeof(out));
}

Test(web_path, files_and_folders)
{
    cr_assert_eq(parse("/"), WEB_PATH_OK);
    cr_assert_str_eq(out, "index.html");
    cr_assert_eq(parse("/app.js"), WEB_PATH_OK);
    cr_assert_str_eq(out, "app.js");
    cr_assert_eq(parse("/chat/"), WEB_PATH_OK);
    cr_assert_str_eq(out, "chat/index.html");
    cr_assert_eq(parse("/a/b/c.css"), WEB_PATH_OK);
    cr_assert_str_eq(out, "a/b/c.css");
    cr_assert_eq(parse("/a%20b.txt"), WEB_PATH_OK);
    cr_assert_str_eq(out, "a b.txt");
    cr_assert_eq(parse("/caf%C3%A9.html"), WEB_PATH_OK);
    cr_assert_str_eq(out, "caf\xc3\xa9.html");
    cr_assert_eq(parse("/x..y"), WEB_PATH_OK);          /* dots inside */
    cr_assert_str_eq(out, "x..y");
}

Test(web_path, traversal_is_refused_encoded_or_not)
{
    const char *bad[] = {
        "/..", "/../etc/passwd", "/a/../../x", "/%2e%2e/etc/passwd",
        "/%2E%2E/x", "/.%2e/x", "/a/%2e%2e/b", "/./x", "/a/.", "/%2e",
        "/.git/config", "/.env", "/a/.hidden", "//etc/passwd", "/a//b",
        "/a%2fb", "/..%2fetc", "/a%5c..%5cb", "/a\\b", "/a%00.html",
        "/a%0a", "/a%7f", "", "x", "relative",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(bad[i]), WEB_PATH_REFUSED, "%s", bad[i]);
}

Test(web_path, bad_escapes_are_malformed)
{
    cr_assert_eq(parse("/a%"), WEB_PATH_MALFORMED);
    cr_assert_eq(parse("/a%2"), WEB_PATH_MALFORMED);
    cr_assert_eq(parse("/a%zz"), WEB_PATH_MALFORMED);
    cr_assert_eq(parse("/a%g0.js"), WEB_PATH_MALFORMED);
}

Test(web_path, bounded_by_the_buffer)
{
    char small[8];
    cr_assert_eq(web_path_parse("/abcdefg", 8, small, sizeof(small)),
                 WEB_PATH_OK);
    cr_assert_str_eq(small, "abcdefg");
    cr_assert_eq(web_path_parse("/abcdefgh", 9, small, sizeof(small)),
                 WEB_PATH_REFUSED);
    /* room for "a/" but not for the index name */
    cr_assert_eq(web_path_parse("/a/", 3, small, sizeof(small)),
                 WEB_PATH_REFUSED);
    char big[WEB_PATH_MAX + 8];
    big[0] = '/';
    memset(big + 1, 'a', sizeof(big) - 2);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(parse(big), WEB_PATH_REFUSED);
}
