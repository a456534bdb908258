/*
 * Request paths of the static site (path.h).
 */
#include "web/path.h"

#include "base/hex.h"

#include <string.h>

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
            int b = base_pct_byte(raw + i, len - i);
            if (b < 0)
                return WEB_PATH_MALFORMED;
            ch = (char)b;
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
