/*
 * Unit tests of server/sendq.c and server/frame.c: push/peek/drop order,
 * byte accounting, growth of the ring while its contents wrap around,
 * reserved entries (they hold output back until filled; a fill that finds
 * no entry releases the frame), and that clear/free release every frame
 * reference. Frames are checked by holding an extra reference and reading
 * f->refs, which a frame's single owner thread may do.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>

#include "net/frame.h"
#include "net/sendq.h"

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

/* Asserts that f holds exactly the bytes of s. */
static void assert_payload(frame *f, const char *s)
{
    cr_assert_not_null(f);
    cr_assert_eq(f->len, strlen(s), "len %u, want %zu (\"%s\")", f->len,
                 strlen(s), s);
    cr_assert_eq(memcmp(frame_payload(f), s, f->len), 0, "payload != \"%s\"",
                 s);
}

Test(sendq, idle_queue_holds_no_memory)
{
    sendq q;
    sendq_init(&q);
    cr_assert_null(q.ring);
    cr_assert_eq(sendq_count(&q), 0);
    cr_assert_eq(sendq_bytes(&q), 0);
    cr_assert_eq(sendq_ready(&q), 0);
    cr_assert_null(sendq_peek(&q, 0));
    sendq_drop(&q, 3);   /* nothing to drop: no effect */
    sendq_clear(&q);
    cr_assert_eq(sendq_count(&q), 0);
    cr_assert_null(q.ring, "clearing an idle queue allocates nothing");
    sendq_free(&q);
    cr_assert_null(q.ring);
}

Test(sendq, push_peek_drop_in_order_with_byte_counts)
{
    sendq q;
    sendq_init(&q);
    sendq_push(&q, mk("one"));
    sendq_push(&q, mk("two!"));
    sendq_push(&q, mk("three"));
    cr_assert_not_null(q.ring, "the first push allocates the ring");
    cr_assert_eq(sendq_count(&q), 3);
    cr_assert_eq(sendq_ready(&q), 3);
    cr_assert_eq(sendq_bytes(&q), 3 + 4 + 5);
    assert_payload(sendq_peek(&q, 0), "one");
    assert_payload(sendq_peek(&q, 1), "two!");
    assert_payload(sendq_peek(&q, 2), "three");
    cr_assert_null(sendq_peek(&q, 3), "beyond the end");
    cr_assert_null(sendq_peek(&q, UINT32_MAX));

    sendq_drop(&q, 0);
    cr_assert_eq(sendq_count(&q), 3, "dropping 0 changes nothing");
    sendq_drop(&q, 1);
    cr_assert_eq(sendq_count(&q), 2);
    cr_assert_eq(sendq_bytes(&q), 4 + 5);
    assert_payload(sendq_peek(&q, 0), "two!");
    assert_payload(sendq_peek(&q, 1), "three");

    /* An empty frame counts as an entry but adds no bytes. */
    sendq_push(&q, frame_new("", 0));
    cr_assert_eq(sendq_count(&q), 3);
    cr_assert_eq(sendq_ready(&q), 3);
    cr_assert_eq(sendq_bytes(&q), 9);

    sendq_drop(&q, 10);   /* more than queued: drops what there is */
    cr_assert_eq(sendq_count(&q), 0);
    cr_assert_eq(sendq_bytes(&q), 0);
    cr_assert_null(sendq_peek(&q, 0));
    sendq_push(&q, mk("again"));
    assert_payload(sendq_peek(&q, 0), "again");
    sendq_free(&q);
}

Test(sendq, steady_traffic_wraps_without_growing)
{
    sendq q;
    sendq_init(&q);
    char buf[32];
    uint32_t in = 0, out = 0, wraps = 0, last_head = 0;
    /* At most 5 queued at a time: the 8-slot ring is reused forever. */
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof(buf), "f%u", in++);
        sendq_push(&q, mk(buf));
        if (sendq_count(&q) == 5) {
            for (int k = 0; k < 3; k++) {
                snprintf(buf, sizeof(buf), "f%u", out++);
                assert_payload(sendq_peek(&q, 0), buf);
                sendq_drop(&q, 1);
            }
        }
        if (q.head < last_head)
            wraps++;
        last_head = q.head;
    }
    cr_assert_eq(q.cap, 8, "ring grew to %u slots", q.cap);
    cr_assert_gt(wraps, 100, "the head wrapped only %u times", wraps);
    cr_assert_eq(sendq_count(&q), in - out);
    for (uint32_t i = 0; i < sendq_count(&q); i++) {
        snprintf(buf, sizeof(buf), "f%u", out + i);
        assert_payload(sendq_peek(&q, i), buf);
    }
    sendq_free(&q);
}

/* Fills the ring so that its contents wrap (head > 0 and count == cap),
 * then pushes once more: the grown ring must keep the order. Repeated
 * across several ring sizes. */
Test(sendq, growth_while_wrapped_keeps_order)
{
    sendq q;
    sendq_init(&q);
    char buf[32];
    uint32_t in = 0, out = 0;
    size_t bytes = 0;

    for (uint32_t cap = 8; cap <= 512; cap *= 2) {
        while (sendq_count(&q) < cap) {
            snprintf(buf, sizeof(buf), "g%u", in++);
            bytes += strlen(buf);
            sendq_push(&q, mk(buf));
        }
        cr_assert_eq(q.cap, cap);
        /* Drop a little more than half, then refill: the tail wraps. */
        for (uint32_t k = 0; k < cap / 2 + 1; k++) {
            snprintf(buf, sizeof(buf), "g%u", out++);
            assert_payload(sendq_peek(&q, 0), buf);
            bytes -= sendq_peek(&q, 0)->len;
            sendq_drop(&q, 1);
        }
        while (sendq_count(&q) < cap) {
            snprintf(buf, sizeof(buf), "g%u", in++);
            bytes += strlen(buf);
            sendq_push(&q, mk(buf));
        }
        cr_assert_eq(q.cap, cap, "no growth while there is room");
        cr_assert_neq(q.head, 0, "contents wrap around the end");
        snprintf(buf, sizeof(buf), "g%u", in++);
        bytes += strlen(buf);
        sendq_push(&q, mk(buf));
        cr_assert_eq(q.cap, cap * 2);
        cr_assert_eq(sendq_count(&q), in - out);
        cr_assert_eq(sendq_bytes(&q), bytes);
        cr_assert_eq(sendq_ready(&q), sendq_count(&q));
        for (uint32_t i = 0; i < sendq_count(&q); i++) {
            snprintf(buf, sizeof(buf), "g%u", out + i);
            assert_payload(sendq_peek(&q, i), buf);
        }
    }
    sendq_free(&q);
    cr_assert_eq(q.cap, 0);
}

Test(sendq, reserved_entry_survives_wraparound_and_growth)
{
    sendq q;
    sendq_init(&q);
    char buf[32];
    for (int i = 0; i < 6; i++) {
        snprintf(buf, sizeof(buf), "p%d", i);
        sendq_push(&q, mk(buf));
    }
    sendq_drop(&q, 5);                 /* head is now 5 of 8 */
    uint64_t r = sendq_reserve(&q);
    cr_assert_eq(r, 6, "seqs count every entry ever queued");
    for (int i = 0; i < 40; i++) {     /* wraps, then grows to 64 */
        snprintf(buf, sizeof(buf), "q%d", i);
        sendq_push(&q, mk(buf));
    }
    cr_assert_eq(q.cap, 64);
    cr_assert_eq(sendq_count(&q), 42);
    cr_assert_eq(sendq_ready(&q), 1, "only p5 is ahead of the reservation");
    cr_assert_null(sendq_peek(&q, 1));
    size_t before = sendq_bytes(&q);

    cr_assert_eq(sendq_fill(&q, r, mk("reply")), 0);
    cr_assert_eq(sendq_bytes(&q), before + 5);
    cr_assert_eq(sendq_ready(&q), 42);
    assert_payload(sendq_peek(&q, 0), "p5");
    assert_payload(sendq_peek(&q, 1), "reply");
    assert_payload(sendq_peek(&q, 2), "q0");
    assert_payload(sendq_peek(&q, 41), "q39");
    sendq_free(&q);
}

Test(sendq, refused_fills_release_the_frame)
{
    sendq q;
    sendq_init(&q);
    frame *f = mk("late reply");
    frame_ref(f);                      /* the test's own reference */

    /* Never reserved: a seq the queue has not handed out yet. */
    cr_assert_eq(sendq_fill(&q, 0, frame_ref(f)), -1, "empty queue");
    cr_assert_eq(f->refs, 2);
    sendq_push(&q, mk("a"));
    cr_assert_eq(sendq_fill(&q, 1, frame_ref(f)), -1, "future seq");
    cr_assert_eq(f->refs, 2);
    cr_assert_eq(sendq_fill(&q, 0, frame_ref(f)), -1,
                 "a pushed (not reserved) entry is already filled");
    cr_assert_eq(f->refs, 2);
    assert_payload(sendq_peek(&q, 0), "a");

    /* Double fill: the second is refused, the first frame stays. */
    uint64_t r = sendq_reserve(&q);
    cr_assert_eq(sendq_fill(&q, r, mk("first")), 0);
    cr_assert_eq(sendq_fill(&q, r, frame_ref(f)), -1);
    cr_assert_eq(f->refs, 2);
    assert_payload(sendq_peek(&q, 1), "first");
    cr_assert_eq(sendq_bytes(&q), 1 + 5);

    /* The entry was written and dropped. */
    sendq_drop(&q, 2);
    cr_assert_eq(sendq_fill(&q, r, frame_ref(f)), -1);
    cr_assert_eq(f->refs, 2);

    /* The connection's queue was cleared while the reply was computed. */
    uint64_t r2 = sendq_reserve(&q);
    uint64_t r3 = sendq_reserve(&q);
    sendq_clear(&q);
    cr_assert_eq(sendq_count(&q), 0);
    cr_assert_eq(sendq_bytes(&q), 0, "unfilled entries carried no bytes");
    cr_assert_eq(sendq_fill(&q, r3, frame_ref(f)), -1);
    cr_assert_eq(sendq_fill(&q, r2, frame_ref(f)), -1);
    cr_assert_eq(f->refs, 2);

    /* Seqs keep increasing after a clear, so an old seq never matches a
     * new entry. */
    uint64_t r4 = sendq_reserve(&q);
    cr_assert_gt(r4, r3);
    cr_assert_eq(sendq_fill(&q, r2, frame_ref(f)), -1);
    cr_assert_eq(sendq_ready(&q), 0);
    cr_assert_eq(sendq_fill(&q, r4, frame_ref(f)), 0);
    cr_assert_eq(f->refs, 3);
    cr_assert_eq(sendq_ready(&q), 1);
    sendq_free(&q);
    cr_assert_eq(f->refs, 2);
    frame_unref(f);
    cr_assert_eq(f->refs, 1);
    frame_unref(f);
}

Test(sendq, free_releases_every_reference)
{
    enum { N = 300 };
    static frame *held[N];
    sendq q;
    sendq_init(&q);
    uint64_t pending[N];
    size_t n_pending = 0;
    char buf[32];
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "frame %d", i);
        held[i] = mk(buf);
        frame_ref(held[i]);
        if (i % 3 == 0) {
            /* Reserved, and for half of them filled. */
            uint64_t r = sendq_reserve(&q);
            if (i % 2 == 0)
                cr_assert_eq(sendq_fill(&q, r, held[i]), 0);
            else
                pending[n_pending++] = r;
        } else {
            sendq_push(&q, held[i]);
        }
    }
    sendq_drop(&q, sendq_ready(&q));   /* what a write would do */
    sendq_free(&q);
    cr_assert_null(q.ring);
    cr_assert_eq(sendq_count(&q), 0);
    cr_assert_eq(sendq_bytes(&q), 0);
    for (size_t i = 0; i < n_pending; i++) {
        frame *f = mk("x");
        frame_ref(f);
        cr_assert_eq(sendq_fill(&q, pending[i], f), -1);
        cr_assert_eq(f->refs, 1);
        frame_unref(f);
    }
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0 && i % 2 != 0) {
            /* Never given to the queue. */
            cr_assert_eq(held[i]->refs, 2);
            frame_unref(held[i]);
        }
        cr_assert_eq(held[i]->refs, 1, "frame %d: %u refs", i,
                     held[i]->refs);
        frame_unref(held[i]);
    }
    /* A freed queue is an idle queue: usable again. */
    sendq_push(&q, mk("reuse"));
    assert_payload(sendq_peek(&q, 0), "reuse");
    sendq_free(&q);
}

Test(frame, new_copies_the_payload_after_the_headroom)
{
    char src[] = "payload bytes";
    frame *f = frame_new(src, sizeof(src) - 1);
    cr_assert_eq(frame_headroom(), LWS_PRE);
    cr_assert_eq(f->refs, 1);
    cr_assert_eq(f->len, sizeof(src) - 1);
    cr_assert_eq(frame_payload(f), f->_pre_and_payload + LWS_PRE);
    src[0] = 'X';   /* a copy, not a view */
    cr_assert_eq(memcmp(frame_payload(f), "payload bytes", f->len), 0);
    cr_assert_eq(frame_ref(f), f);
    cr_assert_eq(f->refs, 2);
    frame_unref(f);
    cr_assert_eq(f->refs, 1);
    frame_unref(f);
    frame_unref(NULL);   /* allowed, like free(NULL) */

    frame *e = frame_new("", 0);
    cr_assert_eq(e->len, 0);
    frame_unref(e);
}

Test(frame, from_buf_takes_the_memory_without_copying)
{
    proto_buf b;
    frame_buf_init(&b);
    /* Enough appends to make the buffer reallocate several times. */
    char chunk[97];
    size_t total = 0;
    for (int i = 0; i < 1000; i++) {
        memset(chunk, 'a' + i % 26, sizeof(chunk));
        proto_buf_append(&b, chunk, sizeof(chunk));
        total += sizeof(chunk);
    }
    char *data = proto_buf_data(&b);
    frame *f = frame_from_buf(&b);
    cr_assert_eq(frame_payload(f), data, "no copy: the payload stays put");
    cr_assert_eq(f->len, total);
    cr_assert_eq(f->refs, 1);
    for (size_t i = 0; i < total; i++)
        cr_assert_eq(frame_payload(f)[i], 'a' + (int)(i / sizeof(chunk)) % 26,
                     "byte %zu", i);
    cr_assert_null(b.base);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);

    /* Nothing encoded: an empty frame, the buffer untouched. */
    frame *e = frame_from_buf(&b);
    cr_assert_eq(e->len, 0);
    cr_assert_eq(e->refs, 1);
    cr_assert_null(b.base);

    /* A frame from a buffer goes through a send queue like any other. */
    sendq q;
    sendq_init(&q);
    sendq_push(&q, frame_ref(f));
    cr_assert_eq(sendq_bytes(&q), total);
    sendq_free(&q);
    cr_assert_eq(f->refs, 1);
    frame_unref(f);
    frame_unref(e);
    proto_buf_free(&b);
}
