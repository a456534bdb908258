/*
 * Hexadecimal digits and percent escapes, for the parsers of request
 * targets (the API's query strings in api/http1.c, the static site's
 * paths in web/path.c): one reading of "%4A" for both.
 */
#ifndef HERALD_BASE_HEX_H
#define HERALD_BASE_HEX_H

#include <stddef.h>

/* The value of one hex digit, either case, or -1. */
static inline int base_hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The byte a percent escape at s stands for ("%4A": 0x4A), or -1 when
 * fewer than 3 characters are left or a digit is not hex. */
static inline int base_pct_byte(const char *s, size_t left)
{
    if (left < 3 || s[0] != '%')
        return -1;
    int hi = base_hex_value(s[1]), lo = base_hex_value(s[2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

#endif
