/*
 * TLS for the server API's connections (tls.h).
 *
 * The BIO under each SSL has no buffer: reading hands OpenSSL what
 * api_tls_input pointed to (the worker's read buffer, during the read
 * callback), and writing appends to the connection's output buffer. The
 * caller drains the input completely (api_tls_read until AGAIN) before the
 * read buffer is reused, so no pointer to it outlives the callback.
 * OpenSSL's error queue is per thread and shared with libwebsockets on the
 * same worker: it is left empty after every call.
 */
#include "api/tls.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "base/log.h"
#include "base/mem.h"

struct api_tls {
    SSL *ssl;
    const char *in;           /* ciphertext not yet taken */
    size_t in_len;
    proto_buf *out;           /* ciphertext to send (the caller's) */
    int failed;
};

static BIO_METHOD *api_tls_method;
static pthread_once_t api_tls_method_once = PTHREAD_ONCE_INIT;

static int api_tls_bio_write(BIO *b, const char *p, int n)
{
    api_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    proto_buf_append(t->out, p, (size_t)n);
    return n;
}

static int api_tls_bio_read(BIO *b, char *p, int n)
{
    api_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (!t->in_len) {
        BIO_set_retry_read(b);   /* WANT_READ: the next socket read */
        return -1;
    }
    size_t k = t->in_len < (size_t)n ? t->in_len : (size_t)n;
    memcpy(p, t->in, k);
    t->in += k;
    t->in_len -= k;
    return (int)k;
}

static long api_tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    api_tls *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;                /* out is sent by the caller */
    case BIO_CTRL_PENDING:
        return t ? (long)t->in_len : 0;
    default:
        return 0;
    }
}

static int api_tls_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void api_tls_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "herald api connection");
    if (!m || !BIO_meth_set_write(m, api_tls_bio_write) ||
        !BIO_meth_set_read(m, api_tls_bio_read) ||
        !BIO_meth_set_ctrl(m, api_tls_bio_ctrl) ||
        !BIO_meth_set_create(m, api_tls_bio_create))
        abort();
    api_tls_method = m;  /* lives as long as the process */
}

api_tls *api_tls_new(SSL_CTX *ctx, proto_buf *out)
{
    pthread_once(&api_tls_method_once, api_tls_method_make);
    api_tls *t = mem_calloc(1, sizeof(*t));
    t->out = out;
    t->ssl = SSL_new(ctx);
    BIO *bio = t->ssl ? BIO_new(api_tls_method) : NULL;
    if (!bio)
        abort();             /* both only fail for want of memory (mem.h) */
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);   /* one BIO both ways, owned by ssl */
    SSL_set_accept_state(t->ssl);
    return t;
}

void api_tls_free(api_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    ERR_clear_error();
    free(t);
}

void api_tls_input(api_tls *t, const char *p, size_t n)
{
    t->in = n ? p : NULL;
    t->in_len = n;
}

/* Why a handshake or record failed, for the debug log: a client without
 * a certificate, from another CA, speaking plain HTTP... */
static void api_tls_log_failure(api_tls *t, int ssl_err)
{
    unsigned long e = ERR_peek_error();
    long verify = SSL_get_verify_result(t->ssl);
    log_debug("API TLS connection failed",
              LOG_STR("reason", e ? ERR_reason_error_string(e) : "io"),
              LOG_STR("certificate", verify == X509_V_OK
                                         ? "-"
                                         : X509_verify_cert_error_string(
                                               verify)),
              LOG_INT("ssl_error", ssl_err));
}

int api_tls_read(api_tls *t, char *buf, size_t cap)
{
    if (t->failed)
        return API_TLS_ERROR;
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    int rc;
    if (e == SSL_ERROR_WANT_READ && !t->in_len) {
        rc = API_TLS_AGAIN;
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        rc = API_TLS_CLOSED;
    } else {
        /* WANT_WRITE cannot happen (the output only grows); WANT_READ
         * with input left would be a loop: treat both as failures. */
        api_tls_log_failure(t, e);
        t->failed = 1;
        rc = API_TLS_ERROR;
    }
    ERR_clear_error();
    if (rc != API_TLS_AGAIN)
        api_tls_input(t, NULL, 0);
    return rc;
}

int api_tls_write(api_tls *t, const void *p, size_t n)
{
    if (t->failed || !SSL_is_init_finished(t->ssl))
        return -1;
    ERR_clear_error();
    size_t done = 0;
    int ok = SSL_write_ex(t->ssl, p, n, &done) == 1 && done == n;
    ERR_clear_error();
    if (!ok)
        t->failed = 1;
    return ok ? 0 : -1;
}

void api_tls_shutdown(api_tls *t)
{
    if (t->failed || !SSL_is_init_finished(t->ssl))
        return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int api_tls_ready(const api_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}
