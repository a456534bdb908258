/*
 * api/tls.c without sockets: a client SSL on memory BIOs talks to an
 * api_tls through the same calls api/listen.c makes (input, read until
 * AGAIN, send what it wrote), with certificates made here: a CA, the
 * server's, a client's from the CA and one from another CA. Also
 * base/tls.c's server context (tls_server_ctx) and CA check.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "api/tls.h"
#include "base/tls.h"

typedef struct cred {
    EVP_PKEY *key;
    X509 *cert;
    char cert_path[64], key_path[64];
} cred;

static cred ca, other_ca, server, client, stranger;
static char dir[] = "/tmp/herald-test-tls-XXXXXX";

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    cr_assert_not_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* A P-256 key and a certificate for cn, signed by issuer (NULL: itself). */
static void make(cred *c, const char *cn, const cred *issuer, int is_ca)
{
    static long serial = 1;
    c->key = EVP_EC_gen("P-256");
    cr_assert_not_null(c->key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, c->key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509 *icert = issuer ? issuer->cert : x;
    X509_set_issuer_name(x, X509_get_subject_name(icert));
    add_ext(x, icert, NID_basic_constraints,
            is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (is_ca)
        add_ext(x, icert, NID_key_usage, "critical,keyCertSign,cRLSign");
    cr_assert(X509_sign(x, issuer ? issuer->key : c->key, EVP_sha256()) > 0);
    c->cert = x;
    snprintf(c->cert_path, sizeof(c->cert_path), "%s/%s.pem", dir, cn);
    snprintf(c->key_path, sizeof(c->key_path), "%s/%s.key", dir, cn);
    FILE *f = fopen(c->cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(c->key_path, "w");
    PEM_write_PrivateKey(f, c->key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    make(&ca, "ca", NULL, 1);
    make(&other_ca, "other-ca", NULL, 1);
    make(&server, "server", &ca, 0);
    make(&client, "client", &ca, 0);
    make(&stranger, "stranger", &other_ca, 0);
}

static void drop(cred *c)
{
    unlink(c->cert_path);
    unlink(c->key_path);
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
}

static void teardown(void)
{
    drop(&ca);
    drop(&other_ca);
    drop(&server);
    drop(&client);
    drop(&stranger);
    rmdir(dir);
}

TestSuite(api_tls, .init = setup, .fini = teardown);

/* A client on memory BIOs facing one api_tls. */
typedef struct pair {
    SSL_CTX *cctx, *sctx;
    SSL *c;
    BIO *c_in, *c_out;      /* what the client reads / what it wrote */
    api_tls *s;
    proto_buf s_out;        /* what the server wrote */
    char plain[65536];      /* what the server decrypted, in order */
    size_t plain_len;
    int s_status;           /* the last non-data api_tls_read result */
    size_t piece;           /* 0: give the server everything at once */
} pair;

static void pair_open(pair *p, const char *server_ca, const cred *as)
{
    char err[512];
    memset(p, 0, sizeof(*p));
    p->sctx = tls_server_ctx(server.cert_path, server.key_path, server_ca,
                             "api_client_ca", err, sizeof(err));
    cr_assert_not_null(p->sctx, "%s", err);
    proto_buf_init(&p->s_out, 0);
    p->s = api_tls_new(p->sctx, &p->s_out);
    p->cctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(p->cctx), ca.cert);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
    if (as) {
        SSL_CTX_use_certificate(p->cctx, as->cert);
        SSL_CTX_use_PrivateKey(p->cctx, as->key);
    }
    p->c = SSL_new(p->cctx);
    p->c_in = BIO_new(BIO_s_mem());
    p->c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(p->c, p->c_in, p->c_out);
    SSL_set_connect_state(p->c);
}

static void pair_close(pair *p)
{
    api_tls_free(p->s);
    proto_buf_free(&p->s_out);
    SSL_free(p->c);
    SSL_CTX_free(p->cctx);
    SSL_CTX_free(p->sctx);
}

/* What the client wrote goes to the server (in pieces of p->piece bytes
 * when set), which reads until AGAIN; what the server wrote goes back.
 * Returns 1 when anything moved. */
static int pump_once(pair *p)
{
    char buf[65536];
    int moved = 0, n;
    while ((n = BIO_read(p->c_out, buf, sizeof(buf))) > 0) {
        moved = 1;
        for (size_t off = 0; off < (size_t)n;) {
            size_t k = p->piece && p->piece < (size_t)n - off
                           ? p->piece
                           : (size_t)n - off;
            api_tls_input(p->s, buf + off, k);
            off += k;
            int got;
            while ((got = api_tls_read(p->s, p->plain + p->plain_len,
                                       sizeof(p->plain) - p->plain_len)) > 0)
                p->plain_len += (size_t)got;
            p->s_status = got;
            if (got != API_TLS_AGAIN)
                break;
        }
    }
    if (p->s_out.len) {
        moved = 1;
        BIO_write(p->c_in, proto_buf_data(&p->s_out), (int)p->s_out.len);
        proto_buf_reset(&p->s_out);
    }
    return moved;
}

static void pump(pair *p)
{
    for (int i = 0; i < 20; i++) {
        ERR_clear_error();
        if (!SSL_is_init_finished(p->c))
            SSL_do_handshake(p->c);
        if (!pump_once(p))
            return;
    }
}

static void client_send(pair *p, const char *s)
{
    size_t done = 0;
    cr_assert_eq(SSL_write_ex(p->c, s, strlen(s), &done), 1);
    pump(p);
}

/* The client reads what the server sent; returns its length (0: none,
 * -1: the connection failed). */
static int client_recv(pair *p, char *buf, size_t cap)
{
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(p->c, buf, cap - 1, &n) == 1) {
        buf[n] = '\0';
        return (int)n;
    }
    int e = SSL_get_error(p->c, 0);
    return e == SSL_ERROR_WANT_READ ? 0 : -1;
}

static void exchange(pair *p)
{
    char buf[256];
    pump(p);
    cr_assert(api_tls_ready(p->s));
    client_send(p, "GET /api/v1/info HTTP/1.1\r\n\r\n");
    cr_assert_eq(p->s_status, API_TLS_AGAIN);
    cr_assert_eq(p->plain_len, 29);
    cr_assert(memcmp(p->plain, "GET /api/v1/info HTTP/1.1\r\n\r\n", 29) == 0);
    cr_assert_eq(api_tls_write(p->s, "HTTP/1.1 200 OK\r\n\r\n", 19), 0);
    pump(p);
    cr_assert_eq(client_recv(p, buf, sizeof(buf)), 19);
    cr_assert_str_eq(buf, "HTTP/1.1 200 OK\r\n\r\n");
}

Test(api_tls, handshake_request_and_answer)
{
    pair p;
    pair_open(&p, NULL, NULL);
    cr_assert_not(api_tls_ready(p.s));
    cr_assert_eq(api_tls_write(p.s, "x", 1), -1, "nothing before the handshake");
    exchange(&p);
    pair_close(&p);
}

Test(api_tls, input_in_one_byte_pieces)
{
    /* records cut anywhere across reads: OpenSSL keeps the part it has */
    pair p;
    pair_open(&p, NULL, NULL);
    p.piece = 1;
    exchange(&p);
    pair_close(&p);
}

Test(api_tls, large_input_in_several_records)
{
    pair p;
    pair_open(&p, NULL, NULL);
    pump(&p);
    static char big[50001];
    memset(big, 'a', sizeof(big) - 1);
    p.piece = 4096;
    client_send(&p, big);
    cr_assert_eq(p.s_status, API_TLS_AGAIN);
    cr_assert_eq(p.plain_len, sizeof(big) - 1);
    pair_close(&p);
}

Test(api_tls, close_notify_and_shutdown)
{
    pair p;
    char buf[64];
    pair_open(&p, NULL, NULL);
    exchange(&p);
    api_tls_shutdown(p.s);
    pump(&p);
    cr_assert_eq(client_recv(&p, buf, sizeof(buf)), -1);
    cr_assert_eq(SSL_get_error(p.c, 0), SSL_ERROR_ZERO_RETURN);
    SSL_shutdown(p.c);
    pump(&p);
    cr_assert_eq(p.s_status, API_TLS_CLOSED);
    pair_close(&p);
}

Test(api_tls, garbage_fails)
{
    pair p;
    pair_open(&p, NULL, NULL);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    api_tls_input(p.s, junk, sizeof(junk) - 1);
    char out[64];
    cr_assert_eq(api_tls_read(p.s, out, sizeof(out)), API_TLS_ERROR);
    cr_assert_eq(api_tls_read(p.s, out, sizeof(out)), API_TLS_ERROR);
    cr_assert_eq(ERR_peek_error(), 0, "the error queue is left empty");
    pair_close(&p);
}

Test(api_tls, client_certificate_from_the_ca)
{
    pair p;
    pair_open(&p, ca.cert_path, &client);
    exchange(&p);
    pair_close(&p);
}

static void refused(const cred *as)
{
    pair p;
    char buf[64];
    pair_open(&p, ca.cert_path, as);
    pump(&p);
    /* TLS 1.3: the client finishes first and learns of the refusal when
     * it reads the server's alert */
    client_send(&p, "GET / HTTP/1.1\r\n\r\n");
    cr_assert_eq(p.s_status, API_TLS_ERROR);
    cr_assert_eq(p.plain_len, 0, "nothing of the request was read");
    cr_assert_not(api_tls_ready(p.s));
    cr_assert_eq(ERR_peek_error(), 0, "the error queue is left empty");
    cr_assert_eq(client_recv(&p, buf, sizeof(buf)), -1);
    pair_close(&p);
}

Test(api_tls, no_client_certificate_refused)
{
    refused(NULL);
}

Test(api_tls, certificate_of_another_ca_refused)
{
    refused(&stranger);
}

Test(api_tls, ca_bundle_checks)
{
    char err[512];
    cr_assert_eq(tls_check_ca("api_client_ca", ca.cert_path, err,
                              sizeof(err)), 0, "%s", err);
    cr_assert_eq(tls_check_ca("api_client_ca", ca.key_path, err,
                              sizeof(err)), -1);
    cr_assert(strstr(err, "api_client_ca '") == err, "%s", err);
    cr_assert(strstr(err, ca.key_path) != NULL, "%s", err);
    cr_assert_eq(tls_check_ca("tls_client_ca", dir, err, sizeof(err)), -1);
    cr_assert(strstr(err, "tls_client_ca '") == err, "%s", err);
    cr_assert(strstr(err, "cannot read") != NULL, "%s", err);
    cr_assert_null(tls_server_ctx(server.cert_path, client.key_path, NULL,
                                  "api_client_ca", err, sizeof(err)));
    cr_assert(strstr(err, "tls_key '") == err, "%s", err);
}
