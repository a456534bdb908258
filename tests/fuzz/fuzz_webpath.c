/*
 * Fuzzing harness of the static site's pure rules (server/web/path.c,
 * server/web/cache.c): the input is a request path as a client sends it,
 * and the same bytes (up to a NUL) as If-None-Match and If-Modified-Since.
 * Beyond not crashing or tripping a sanitizer:
 *  - a path accepted names a file beneath the directory: no leading '/',
 *    no empty segment, no segment that starts with '.' (so no "." or
 *    ".."), no backslash, NUL or control character, and it fits the
 *    buffer; a smaller buffer accepts nothing the larger one refuses;
 *  - an If-Modified-Since that parses is printed back as the same date.
 */
#include <stdlib.h>
#include <string.h>

#include "web/cache.h"
#include "web/path.h"

#include "fuzzkit.h"

static void check_name(const char *out, size_t cap)
{
    size_t n = strlen(out);
    FUZZ_CHECK(n > 0 && n < cap);
    FUZZ_CHECK(out[0] != '/');
    const char *seg = out;
    for (size_t i = 0; i <= n; i++) {
        unsigned char ch = (unsigned char)out[i];
        if (ch == '/' || ch == '\0') {
            FUZZ_CHECK(out + i > seg);            /* no empty segment */
            FUZZ_CHECK(seg[0] != '.');
            seg = out + i + 1;
            continue;
        }
        FUZZ_CHECK(ch >= 0x20 && ch != 0x7f && ch != '\\');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw = (const char *)data;
    char big[WEB_PATH_MAX], small[24];
    web_path_status a = web_path_parse(raw, size, big, sizeof(big));
    if (a == WEB_PATH_OK)
        check_name(big, sizeof(big));
    web_path_status b = web_path_parse(raw, size, small, sizeof(small));
    if (b == WEB_PATH_OK) {
        check_name(small, sizeof(small));
        FUZZ_CHECK(a == WEB_PATH_OK && strcmp(big, small) == 0);
    }

    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t t;
    if (web_http_date_parse(text, &t) == 0) {
        char back[WEB_DATE_MAX];
        web_http_date(back, t);
        /* a day name is not checked against the date: compare the rest */
        FUZZ_CHECK(strcmp(back + 3, text + 3) == 0 || t < 0);
    }
    (void)web_not_modified(text, NULL, "\"1-2-3\"", 5);
    (void)web_not_modified(NULL, text, "\"1-2-3\"", 5);
    free(text);
    return 0;
}
