/* Payload stamps: see stamp.h. */
#include "stamp.h"

#include <string.h>
#include <time.h>

static const char hexd[16] = "0123456789abcdef";

static void put_hex(char *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = hexd[v & 15];
        v >>= 4;
    }
}

static int get_hex(const char *p, int digits, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return -1;
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

static void put_text(char *p, const stamp *s)
{
    memcpy(p, "HB1:", 4);
    put_hex(p + 4, s->t_ns, 16);
    p[20] = ':';
    put_hex(p + 21, s->seq, 16);
    p[37] = ':';
    put_hex(p + 38, s->pub, 8);
    p[46] = ':';
}

size_t stamp_encode(int enc, const stamp *s, size_t size, char *buf,
                    size_t cap)
{
    size_t n, hdr, text;
    if (enc == STAMP_JSON) {
        n = size < STAMP_MIN_SIZE ? STAMP_MIN_SIZE : size;
        if (cap < n)
            return 0;
        buf[0] = '"';
        put_text(buf + 1, s);
        memset(buf + 1 + STAMP_TEXT, 'x', n - 2 - STAMP_TEXT);
        buf[n - 1] = '"';
        return n;
    }
    /* msgpack str: pick the header so that header + text = size. */
    n = size < STAMP_TEXT + 1 ? STAMP_TEXT + 1 : size;
    if (n - 1 <= 31)
        hdr = 1;
    else if (n - 2 <= 255)
        hdr = 2;
    else if (n - 3 <= 65535)
        hdr = 3;
    else
        hdr = 5;
    text = n - hdr;
    if (text < STAMP_TEXT) {       /* 33 bytes: str8 header does not fit */
        text = STAMP_TEXT;
        n = text + hdr;
    }
    if (cap < n)
        return 0;
    switch (hdr) {
    case 1: buf[0] = (char)(0xa0 | text); break;
    case 2: buf[0] = (char)0xd9; buf[1] = (char)text; break;
    case 3:
        buf[0] = (char)0xda;
        buf[1] = (char)(text >> 8);
        buf[2] = (char)text;
        break;
    default:
        buf[0] = (char)0xdb;
        buf[1] = (char)(text >> 24);
        buf[2] = (char)(text >> 16);
        buf[3] = (char)(text >> 8);
        buf[4] = (char)text;
    }
    put_text(buf + hdr, s);
    memset(buf + hdr + STAMP_TEXT, 'x', text - STAMP_TEXT);
    return n;
}

int stamp_decode(int enc, const void *data, size_t len, stamp *out)
{
    const unsigned char *p = data;
    size_t hdr;
    uint64_t v;
    if (enc == STAMP_JSON) {
        if (len < STAMP_MIN_SIZE || p[0] != '"')
            return -1;
        hdr = 1;
    } else {
        if (len < 1)
            return -1;
        if ((p[0] & 0xe0) == 0xa0)
            hdr = 1;
        else if (p[0] == 0xd9)
            hdr = 2;
        else if (p[0] == 0xda)
            hdr = 3;
        else if (p[0] == 0xdb)
            hdr = 5;
        else
            return -1;
        if (len < hdr + STAMP_TEXT)
            return -1;
    }
    const char *t = (const char *)p + hdr;
    if (memcmp(t, "HB1:", 4) || t[20] != ':' || t[37] != ':' || t[46] != ':')
        return -1;
    if (get_hex(t + 4, 16, &out->t_ns) || get_hex(t + 21, 16, &out->seq) ||
        get_hex(t + 38, 8, &v))
        return -1;
    out->pub = (uint32_t)v;
    return 0;
}

uint64_t stamp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
