/*
 * Cluster control over Redis pub/sub (broker.h: ask_all, answer). Every
 * worker of every node subscribes, on its first link, to the shared
 * channel P:!ctl and to a reply channel of its own, P:!re:<id>. An ask is
 * PUBLISHed to P:!ctl as "<reply channel>\n<JSON>"; PUBLISH's reply is the
 * number of workers that got it, so the asker knows how many answers to
 * wait for (a worker that dies after receiving makes the ask time out,
 * never wait forever). Answers are PUBLISHed to the asker's reply channel.
 */
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "broker/redis/redis_priv.h"

static void control_on_published(rreq *rq, redisReply *rep)
{
    redis_broker *rb = rq->l->rb;
    route to;
    memcpy(&to, rq->name, sizeof(to));
    long n = rep && rep->type == REDIS_REPLY_INTEGER ? (long)rep->integer : -1;
    if (rb->b.ctl.sent)
        rb->b.ctl.sent(rb->b.ctl.ctx, &to, n);
}

int redis_ask_all(broker *b, const char *body, size_t len, const route *to)
{
    redis_broker *rb = (redis_broker *)b;
    rlink *l = &rb->links[0];
    if (!l->up || l->pending >= REDIS_PENDING_MAX)
        return -1;
    size_t rlen = strlen(rb->reply);
    char *m = mem_alloc(rlen + 1 + len);
    memcpy(m, rb->reply, rlen);
    m[rlen] = '\n';
    memcpy(m + rlen + 1, body, len);
    rreq *rq = rreq_new(l, control_on_published, (const char *)to,
                        sizeof(*to));
    const char *argv[] = { "PUBLISH", rb->ctl, m };
    size_t lens[] = { 7, strlen(rb->ctl), rlen + 1 + len };
    int rc = rlink_send(l, rq, 3, argv, lens);
    free(m);
    if (rc < 0)
        free(rq);
    return rc;
}

void redis_answer(broker *b, const char *reply_to, size_t rlen,
                  const char *body, size_t len)
{
    redis_broker *rb = (redis_broker *)b;
    rlink *l = &rb->links[0];
    if (!l->up || l->pending >= REDIS_PENDING_MAX)
        return;              /* the asker times out */
    rreq *rq = rreq_new(l, NULL, NULL, 0);
    const char *argv[] = { "PUBLISH", reply_to, body };
    size_t lens[] = { 7, rlen, len };
    if (rlink_send(l, rq, 3, argv, lens) < 0)
        free(rq);
}

static int name_is(const redisReply *r, const char *name)
{
    size_t n = strlen(name);
    return r->len == n && memcmp(r->str, name, n) == 0;
}

int redis_control_on_sub(rlink *l, redisReply *rep)
{
    redis_broker *rb = l->rb;
    const redisReply *name = rep->element[1];
    int ctl = name_is(name, rb->ctl), reply = !ctl && name_is(name, rb->reply);
    if (!ctl && !reply)
        return 0;
    const redisReply *e = rep->element[2];
    if (strcmp(rep->element[0]->str, "message") != 0 ||
        e->type != REDIS_REPLY_STRING)
        return 1;            /* a subscribe confirmation */
    if (reply) {
        if (rb->b.ctl.answered)
            rb->b.ctl.answered(rb->b.ctl.ctx, e->str, e->len);
        return 1;
    }
    const char *nl = memchr(e->str, '\n', e->len);
    if (nl && rb->b.ctl.asked)
        rb->b.ctl.asked(rb->b.ctl.ctx, e->str, (size_t)(nl - e->str), nl + 1,
                        e->len - (size_t)(nl - e->str) - 1);
    return 1;
}
