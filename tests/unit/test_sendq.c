/* Unit tests of server/sendq.c and server/frame.c: order, byte
 * accounting, growth across wrap-around, reserved entries, references. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "sendq.h"

static frame *mk(const char *s)
{
    return frame_new(s, strlen(s));
}

Test(sendq, fifo_order_and_bytes_across_wraparound)
{
    sendq q;
    sendq_init(&q);
    char buf[32];
    uint32_t next_in = 0, next_out = 0;
    /* Interleave pushes and drops so head wraps many times while the ring
     * grows from 8 to 64 slots. */
    for (int round = 0; round < 200; round++) {
        int push = 1 + round % 37;
        for (int i = 0; i < push; i++) {
            snprintf(buf, sizeof(buf), "m%u", next_in++);
            sendq_push(&q, mk(buf));
        }
        int drop = round % 29;
        for (int i = 0; i < drop && sendq_count(&q); i++) {
            frame *f = sendq_peek(&q, 0);
            snprintf(buf, sizeof(buf), "m%u", next_out++);
            cr_assert_eq(f->len, strlen(buf));
            cr_assert_eq(memcmp(frame_payload(f), buf, f->len), 0);
            sendq_drop(&q, 1);
        }
        size_t bytes = 0;
        for (uint32_t i = 0; i < sendq_count(&q); i++)
            bytes += sendq_peek(&q, i)->len;
        cr_assert_eq(sendq_bytes(&q), bytes);
        cr_assert_eq(sendq_count(&q), next_in - next_out);
        cr_assert_eq(sendq_ready(&q), sendq_count(&q));
    }
    sendq_free(&q);
    cr_assert_null(q.ring);
}

Test(sendq, reserved_entries_block_output_until_filled)
{
    sendq q;
    sendq_init(&q);
    sendq_push(&q, mk("a"));
    uint64_t r1 = sendq_reserve(&q);
    sendq_push(&q, mk("bb"));
    uint64_t r2 = sendq_reserve(&q);
    cr_assert_eq(sendq_count(&q), 4);
    cr_assert_eq(sendq_ready(&q), 1);
    cr_assert_eq(sendq_bytes(&q), 3);
    cr_assert_null(sendq_peek(&q, 1));

    cr_assert_eq(sendq_fill(&q, r2, mk("dddd")), 0);
    cr_assert_eq(sendq_ready(&q), 1, "a later fill does not release output");
    cr_assert_eq(sendq_fill(&q, r1, mk("ccc")), 0);
    cr_assert_eq(sendq_ready(&q), 4);
    cr_assert_eq(sendq_bytes(&q), 10);
    const char *want[] = { "a", "ccc", "bb", "dddd" };
    for (uint32_t i = 0; i < 4; i++)
        cr_assert_eq(memcmp(frame_payload(sendq_peek(&q, i)), want[i],
                            strlen(want[i])), 0);

    /* Filling twice, or an entry that is gone, releases the frame. */
    frame *f = mk("x");
    frame_ref(f);
    cr_assert_eq(sendq_fill(&q, r1, f), -1);
    cr_assert_eq(f->refs, 1);
    sendq_drop(&q, 2);
    cr_assert_eq(sendq_fill(&q, r1, f), -1, "dropped entry");
    cr_assert_eq(sendq_fill(&q, 99, mk("y")), -1, "never reserved");
    sendq_free(&q);
}

Test(sendq, clear_drops_reservations_and_releases_references)
{
    sendq q;
    sendq_init(&q);
    frame *shared = mk("shared");
    for (int i = 0; i < 20; i++)
        sendq_push(&q, frame_ref(shared));
    uint64_t r = sendq_reserve(&q);
    cr_assert_eq(shared->refs, 21);
    sendq_clear(&q);
    cr_assert_eq(shared->refs, 1);
    cr_assert_eq(sendq_count(&q), 0);
    cr_assert_eq(sendq_bytes(&q), 0);
    cr_assert_eq(sendq_fill(&q, r, frame_ref(shared)), -1);
    cr_assert_eq(shared->refs, 1);
    sendq_push(&q, frame_ref(shared));
    sendq_free(&q);
    cr_assert_eq(shared->refs, 1);
    frame_unref(shared);
}

Test(frame, from_buf_steals_the_encoded_payload)
{
    proto_buf b;
    frame_buf_init(&b);
    proto_buf_append(&b, "hello ", 6);
    proto_buf_append(&b, "world", 5);
    frame *f = frame_from_buf(&b);
    cr_assert_eq(f->len, 11);
    cr_assert_eq(f->refs, 1);
    cr_assert_eq(memcmp(frame_payload(f), "hello world", 11), 0);
    cr_assert_null(b.base, "the buffer was handed over");
    /* The buffer can be reused for the next frame. */
    proto_buf_append(&b, "again", 5);
    frame *g = frame_from_buf(&b);
    cr_assert_eq(memcmp(frame_payload(g), "again", 5), 0);
    frame_unref(f);
    frame_unref(g);
    proto_buf_free(&b);
}
