/*
 * TLS server contexts (tls.h), with OpenSSL directly: the same calls
 * libwebsockets makes when it creates a vhost's server context, so that
 * what passes the check at start also loads there.
 */
#include "base/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "base/log.h"

/* An encrypted key would make OpenSSL prompt on the terminal: refuse. */
static int tls_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static void tls_fail(char *err, size_t errlen, const char *key,
                     const char *path, const char *what)
{
    /* The first error is the cause ("No such file or directory", "no
     * start line"); later ones only say which layer gave up. */
    unsigned long e = ERR_peek_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s '%s': %s%s%s\n", key, path, what,
             reason ? ": " : "", reason ? reason : "");
}

/* A file that cannot be opened or read (a directory opens), said plainly
 * (OpenSSL reports it as a system library error without the reason). */
static int tls_readable(const char *key, const char *path, char *err,
                        size_t errlen)
{
    FILE *f = fopen(path, "r");
    int ok = f && (getc(f) != EOF || !ferror(f));
    if (!ok)
        snprintf(err, errlen, "%s '%s': cannot read: %s\n", key, path,
                 strerror(errno));
    if (f)
        fclose(f);
    return ok;
}

static SSL_CTX *tls_ctx_new(const char *key, const char *path, char *err,
                            size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        tls_fail(err, errlen, key, path, "cannot create a TLS context");
    return ctx;
}

/* cert and key into ctx; 0, or -1 with the message in err. */
static int tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key,
                         char *err, size_t errlen)
{
    if (!tls_readable("tls_cert", cert, err, errlen) ||
        !tls_readable("tls_key", key, err, errlen))
        return -1;
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_password);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        tls_fail(err, errlen, "tls_cert", cert,
                 "cannot load the PEM certificate chain");
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        tls_fail(err, errlen, "tls_key", key,
                 ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH
                     ? "does not belong to the certificate of tls_cert"
                     : "cannot load the PEM private key (unencrypted)");
    else if (SSL_CTX_check_private_key(ctx) != 1)
        tls_fail(err, errlen, "tls_key", key,
                 "does not belong to the certificate of tls_cert");
    else
        return 0;
    return -1;
}

/* The CA bundle a client certificate must verify against, and the names
 * of its certificates, which the server's certificate request lists (a
 * client holding several certificates picks one by them). */
static int tls_load_ca(SSL_CTX *ctx, const char *key, const char *path,
                       char *err, size_t errlen)
{
    if (!tls_readable(key, path, err, errlen))
        return -1;
    if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1) {
        tls_fail(err, errlen, key, path,
                 "cannot load the PEM CA certificates");
        return -1;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
    if (!names) {
        tls_fail(err, errlen, key, path, "holds no PEM CA certificate");
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    return 0;
}

int tls_check_files(const char *cert, const char *key, char *err,
                    size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = tls_ctx_new("tls_cert", cert, err, errlen);
    if (!ctx)
        return -1;
    int rc = tls_load_pair(ctx, cert, key, err, errlen);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int tls_check_ca(const char *key, const char *path, char *err,
                 size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = tls_ctx_new(key, path, err, errlen);
    if (!ctx)
        return -1;
    int rc = tls_load_ca(ctx, key, path, err, errlen);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

/* Settings every server context gets, lws's vhost included: no protocol
 * older than TLS 1.2, and no renegotiation (a client could make the
 * server redo the expensive part of a handshake at will). */
static void tls_harden(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
}

/* Client certificates against the loaded bundle, and required. Sessions
 * are resumed only inside the context that verified them. */
static void tls_require_client(SSL_CTX *ctx)
{
    static const unsigned char sid[] = "herald";
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
}

SSL_CTX *tls_server_ctx(const char *cert, const char *key, const char *ca,
                        const char *ca_key, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = tls_ctx_new("tls_cert", cert, err, errlen);
    if (!ctx)
        return NULL;
    tls_harden(ctx);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (tls_load_pair(ctx, cert, key, err, errlen) < 0)
        goto fail;
    if (ca && ca[0]) {
        if (tls_load_ca(ctx, ca_key, ca, err, errlen) < 0)
            goto fail;
        tls_require_client(ctx);
    }
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* lws 4.1 switches a TLS connection to the vhost whose name matches the
 * client's SNI, or else to the first vhost "on the same port"; its vhosts
 * adopt sockets, and all have the same port (none). With a plain vhost
 * beside the TLS one (tls_listen), a TLS client would be moved to the
 * plain vhost's context, which has none; a name that is a prefix of a
 * vhost's name also matches. Each worker has one TLS vhost: nothing to
 * choose, so the client's SNI is acknowledged and ignored. */
static int tls_sni_keep(SSL *ssl, int *alert, void *arg)
{
    (void)ssl;
    (void)alert;
    (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

int tls_lws_vhost_setup(SSL_CTX *ctx, const char *client_ca)
{
    SSL_CTX_set_tlsext_servername_callback(ctx, tls_sni_keep);
    tls_harden(ctx);
    if (client_ca && client_ca[0]) {
        /* lws loaded the bundle for verification (ssl_ca_filepath) but
         * does not list its names in the certificate request. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (!names)
            return -1;
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    return 0;
}

int tls_lws_verify_verdict(void *x509_ctx, int preverify_ok)
{
    if (preverify_ok)
        return 0;
    X509_STORE_CTX *x = x509_ctx;
    int e = X509_STORE_CTX_get_error(x);
    log_debug("client certificate refused",
              LOG_STR("reason", X509_verify_cert_error_string(e)),
              LOG_INT("depth", X509_STORE_CTX_get_error_depth(x)));
    return 1;
}
