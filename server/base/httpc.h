/*
 * The settings every HTTP call Herald makes shares (the JWKS fetch, proxy
 * calls, webhooks): http and https only, no redirects followed, no
 * signals (threads), one bound for connecting and for the whole call,
 * Herald's user agent. The callers add what is theirs (body, headers,
 * where the answer goes).
 */
#ifndef HERALD_BASE_HTTPC_H
#define HERALD_BASE_HTTPC_H

#include <stdint.h>

#include <curl/curl.h>

void httpc_setup(CURL *h, const char *url, uint32_t timeout_ms);

#endif
