/*
 * Frames: encoded outgoing messages owned by one worker thread. A frame
 * holds the payload with LWS_PRE bytes of headroom in front, because
 * lws_write() builds the WebSocket header inside that headroom. That write
 * is why a frame never crosses threads: a publication is encoded once per
 * worker and encoding into one frame, and that frame is shared (refcounted,
 * non-atomically, by the owning worker alone) by every local subscriber's
 * send queue.
 */
#ifndef HERALD_FRAME_H
#define HERALD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <herald/proto.h>

typedef struct frame {
    uint32_t refs;      /* owner thread only */
    uint32_t len;       /* payload bytes */
    /* LWS_PRE bytes of headroom, then the payload */
    char _pre_and_payload[];
} frame;

/* Bytes reserved before a frame's payload (LWS_PRE). */
size_t frame_headroom(void);

/* Prepares b so that an encoder can append the payload of a future frame. */
void frame_buf_init(proto_buf *b);

/* Turns the payload encoded into b into a frame with one reference; b is
 * left empty and reusable (its memory now belongs to the frame). */
frame *frame_from_buf(proto_buf *b);

/* Copies len bytes into a new frame with one reference. */
frame *frame_new(const void *p, size_t len);

static inline char *frame_payload(frame *f)
{
    return f->_pre_and_payload + frame_headroom();
}

static inline frame *frame_ref(frame *f)
{
    f->refs++;
    return f;
}

void frame_unref(frame *f);

#endif
