/*
 * TLS for the server API's connections (api_tls): one OpenSSL SSL per
 * connection over a BIO of its own that reads the bytes libuv just read
 * (no copy, nothing kept: OpenSSL holds an incomplete record itself) and
 * writes into the connection's output buffer, which api/listen.c sends
 * with uv_write. So the connection keeps its libuv handle, its one read
 * buffer per worker and its bounds, and TLS is only a step between the
 * socket and http1. The SSL_CTX is the process's one (base/tls.h), made at
 * start. Owned by the connection's worker thread.
 */
#ifndef HERALD_API_TLS_H
#define HERALD_API_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include <herald/proto.h>

typedef struct api_tls api_tls;

enum {
    API_TLS_AGAIN = 0,    /* every byte given was taken: read on */
    API_TLS_ERROR = -1,   /* the handshake or a record failed (an alert
                             may be in the output): close */
    API_TLS_CLOSED = -2   /* the client sent close_notify */
};

/* A server-side connection; the ciphertext it has to send is appended to
 * out (owned by the caller, who sends it and empties it). */
api_tls *api_tls_new(SSL_CTX *ctx, proto_buf *out);
void api_tls_free(api_tls *t);
/* Ciphertext read from the socket, taken by api_tls_read until it
 * returns API_TLS_AGAIN (or fails); p must stay valid until then. */
void api_tls_input(api_tls *t, const char *p, size_t n);
/* Bytes of plaintext into buf (> 0), or an API_TLS_* value. Handshake
 * messages it answers go to out. */
int api_tls_read(api_tls *t, char *buf, size_t cap);
/* Encrypts n bytes into out; -1 when the connection cannot send (its
 * handshake is not done, or it failed). */
int api_tls_write(api_tls *t, const void *p, size_t n);
/* Appends close_notify to out (the last thing sent before a close). */
void api_tls_shutdown(api_tls *t);
/* The handshake is done (and the client's certificate, when one is
 * required, verified). */
int api_tls_ready(const api_tls *t);

#endif
