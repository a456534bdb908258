/*
 * Channel name syntax (protocol-v1.md, "Channels"): 1..255 bytes of
 * [A-Za-z0-9_.:@/=#-] ('#' since the user-personal channels: what follows
 * the last '#' names a user). The namespace is the part before the first
 * ':'; it picks the per-namespace options on the server. A lookup table keeps the
 * check branch-free per byte, since every subscribe and publish runs it.
 */
#include <string.h>

#include "proto_internal.h"

static const unsigned char channel_ok[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['_'] = 1, ['.'] = 1, [':'] = 1, ['@'] = 1, ['/'] = 1, ['='] = 1,
    ['-'] = 1, ['#'] = 1,
};

int proto_channel_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > PROTO_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!channel_ok[(unsigned char)s[i]])
            return 0;
    return 1;
}

proto_slice proto_channel_namespace(proto_slice channel)
{
    proto_slice ns = { channel.ptr, 0 };
    const char *colon;

    if (!channel.ptr || channel.len == 0)
        return ns;
    colon = memchr(channel.ptr, ':', channel.len);
    if (colon)
        ns.len = (size_t)(colon - channel.ptr);
    return ns;
}

int proto_idem_key_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > PROTO_IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}
