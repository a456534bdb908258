/*
 * TLS server contexts with OpenSSL directly, made from the configuration's
 * files (tls_cert, tls_key, and the CA bundles of tls_client_ca and
 * api_client_ca). Everything is loaded on the main thread before anything
 * listens, so that an unusable file stops the start (and --check-config)
 * with the key, the file and OpenSSL's reason instead of every worker
 * failing after "listening". Used three ways: the checks at start; the
 * server API's one SSL_CTX (api_tls), shared by the workers; and the
 * extra set-up of the libwebsockets vhost that serves TLS on the main port
 * (which lws creates itself from the same files).
 */
#ifndef HERALD_BASE_TLS_H
#define HERALD_BASE_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Returns 0 when cert (PEM chain) and key (PEM, not encrypted) load and
 * belong together; otherwise -1 with one line in err, naming the key
 * ("tls_cert" or "tls_key") and the file. */
int tls_check_files(const char *cert, const char *key, char *err,
                    size_t errlen);

/* Returns 0 when path is a PEM bundle of at least one CA certificate;
 * otherwise -1 with one line in err naming `key` (the configuration key,
 * "tls_client_ca" or "api_client_ca") and the file. */
int tls_check_ca(const char *key, const char *path, char *err,
                 size_t errlen);

/* A server context for cert/key (TLS 1.2 and later, no renegotiation);
 * with ca (not "") it requires a client certificate that verifies against
 * that bundle (ca_key names it in messages). NULL with one line in err. */
SSL_CTX *tls_server_ctx(const char *cert, const char *key, const char *ca,
                        const char *ca_key, char *err, size_t errlen);

/* The extra set-up of an lws vhost's server context (lws's
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS): see tls.c.
 * client_ca: the bundle whose names are sent in the certificate request,
 * or "" / NULL. Returns 0, or -1 (the vhost is not created). */
int tls_lws_vhost_setup(SSL_CTX *ctx, const char *client_ca);

/* OpenSSL's verdict on a client certificate (preverify_ok: 1 it verified,
 * 0 it did not; x509_ctx: the X509_STORE_CTX) as the answer lws expects
 * from LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION: 0 accept,
 * 1 refuse. A refusal is logged (debug) with OpenSSL's reason. */
int tls_lws_verify_verdict(void *x509_ctx, int preverify_ok);

#endif
