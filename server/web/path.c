/*
 * Request paths of the static site (path.h).
 */
#include "web/path.h"

#include <string.h>

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A decoded segment (n bytes, no '/') that may be a name in the tree. */
static int segment_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            return 0;
    }
    return 1;
}

web_path_status web_path_parse(const char *raw, size_t len, char *out,
                               size_t cap)
{
    static const char index_name[] = "index.html";
    if (cap == 0 || len == 0 || raw[0] != '/')
        return WEB_PATH_REFUSED;
    size_t o = 0, seg = 0;     /* seg: where the current segment starts */
    for (size_t i = 1; i < len; i++) {
        char ch = raw[i];
        if (ch == '/') {
            if (!segment_ok(out + seg, o - seg))
                return WEB_PATH_REFUSED;
            if (o + 1 >= cap)
                return WEB_PATH_REFUSED;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (ch == '%') {
            int hi = len - i >= 3 ? hex_digit(raw[i + 1]) : -1;
            int lo = len - i >= 3 ? hex_digit(raw[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return WEB_PATH_MALFORMED;
            ch = (char)(hi * 16 + lo);
            i += 2;
            /* an escaped slash would be a name with '/' in it, and a NUL
             * would end the name early: neither names a file */
            if (ch == '/' || ch == '\0')
                return WEB_PATH_REFUSED;
        }
        if (o + 1 >= cap)
            return WEB_PATH_REFUSED;
        out[o++] = ch;
    }
    if (o == seg) {
        /* "/" or ".../": the folder's index */
        if (o + sizeof(index_name) > cap)
            return WEB_PATH_REFUSED;
        memcpy(out + o, index_name, sizeof(index_name));
        return WEB_PATH_OK;
    }
    if (!segment_ok(out + seg, o - seg))
        return WEB_PATH_REFUSED;
    out[o] = '\0';
    return WEB_PATH_OK;
}
