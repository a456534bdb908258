/*
 * web/mime.c: content types by extension.
 */
#include <criterion/criterion.h>

#include "web/mime.h"

Test(web_mime, known_types)
{
    cr_assert_str_eq(web_mime_type("index.html"), "text/html; charset=utf-8");
    cr_assert_str_eq(web_mime_type("a/app.js"),
                     "text/javascript; charset=utf-8");
    cr_assert_str_eq(web_mime_type("m.mjs"),
                     "text/javascript; charset=utf-8");
    cr_assert_str_eq(web_mime_type("s.css"), "text/css; charset=utf-8");
    cr_assert_str_eq(web_mime_type("d.json"), "application/json");
    cr_assert_str_eq(web_mime_type("app.js.map"), "application/json");
    cr_assert_str_eq(web_mime_type("i.svg"), "image/svg+xml");
    cr_assert_str_eq(web_mime_type("i.png"), "image/png");
    cr_assert_str_eq(web_mime_type("i.JPG"), "image/jpeg");
    cr_assert_str_eq(web_mime_type("favicon.ico"), "image/x-icon");
    cr_assert_str_eq(web_mime_type("r.txt"), "text/plain; charset=utf-8");
    cr_assert_str_eq(web_mime_type("c.wasm"), "application/wasm");
    cr_assert_str_eq(web_mime_type("f.woff2"), "font/woff2");
}

Test(web_mime, unknown_is_octet_stream)
{
    cr_assert_str_eq(web_mime_type("x.exe"), "application/octet-stream");
    cr_assert_str_eq(web_mime_type("README"), "application/octet-stream");
    cr_assert_str_eq(web_mime_type("dir.html/file"),
                     "application/octet-stream");
    cr_assert_str_eq(web_mime_type("a/.js"), "application/octet-stream");
    cr_assert_str_eq(web_mime_type("x."), "application/octet-stream");
}
