/*
 * TLS configuration check (tls.h), with OpenSSL directly: the same calls
 * libwebsockets makes when it creates a vhost's server context.
 */
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

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

/* A file that cannot be opened, said plainly (OpenSSL reports it as a
 * system library error without the reason). */
static int tls_readable(const char *key, const char *path, char *err,
                        size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s '%s': cannot read: %s\n", key, path,
                 strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

int tls_check_files(const char *cert, const char *key, char *err,
                    size_t errlen)
{
    int rc = -1;
    if (!tls_readable("tls_cert", cert, err, errlen) ||
        !tls_readable("tls_key", key, err, errlen))
        return -1;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_fail(err, errlen, "tls_cert", cert, "cannot create a TLS context");
        return -1;
    }
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
        rc = 0;
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}
