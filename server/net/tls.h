/*
 * TLS configuration check: the certificate chain and private key of
 * tls_cert / tls_key are loaded once, on the main thread, before anything
 * listens, so that an unusable pair stops the start (and --check-config)
 * with the key, the file and OpenSSL's reason, instead of every worker
 * failing to create its libwebsockets context after "listening".
 */
#ifndef HERALD_NET_TLS_H
#define HERALD_NET_TLS_H

#include <stddef.h>

/* Returns 0 when cert (PEM chain) and key (PEM, not encrypted) load and
 * belong together; otherwise -1 with one line in err, naming the key
 * ("tls_cert" or "tls_key") and the file. */
int tls_check_files(const char *cert, const char *key, char *err,
                    size_t errlen);

#endif
