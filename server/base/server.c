/*
 * Process-level helpers (server.h).
 */
#include "base/server.h"

#include <time.h>

#include <uthash.h>

uint16_t server_owner(const server *s, const char *chan, size_t len)
{
    unsigned hv;
    HASH_VALUE(chan, len, hv);
    return (uint16_t)(hv % s->n_workers);
}

void server_post(server *s, uint16_t to, msg *m)
{
    mailbox_post(s->inbox[to], m);
}

unsigned server_backlog(const server *s, uint16_t w)
{
    return mailbox_backlog(s->inbox[w]);
}

int64_t server_now_ms(const server *s)
{
    if (s->clock_ms)
        return s->clock_ms();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
