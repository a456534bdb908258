/*
 * Frame allocation. A frame is one malloc: the header, LWS_PRE headroom and
 * the payload. frame_from_buf() steals a proto_buf whose headroom was set
 * up by frame_buf_init(), so encoding a push costs no extra copy.
 */
#include "net/frame.h"

#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

size_t frame_headroom(void)
{
    return LWS_PRE;
}

void frame_buf_init(proto_buf *b)
{
    proto_buf_init(b, offsetof(frame, _pre_and_payload) + LWS_PRE);
}

frame *frame_from_buf(proto_buf *b)
{
    if (!b->base) {
        /* Nothing was encoded: make an empty frame. */
        return frame_new("", 0);
    }
    frame *f = (frame *)b->base;
    f->refs = 1;
    f->len = (uint32_t)b->len;
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    return f;
}

frame *frame_new(const void *p, size_t len)
{
    frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (!f)
        abort();
    f->refs = 1;
    f->len = (uint32_t)len;
    memcpy(frame_payload(f), p, len);
    return f;
}

void frame_unref(frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}
