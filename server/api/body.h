/*
 * A server API request body: one JSON object (application/json) or one
 * msgpack map with the same field names (application/msgpack). The fields
 * are read from a jansson object in both cases (a msgpack body is
 * converted, with the protocol's rules: string keys, no duplicates, no
 * value JSON cannot carry), while publication data is taken from the
 * original bytes, so subscribers get it exactly as the backend wrote it
 * in either encoding (no re-printing of numbers).
 */
#ifndef HERALD_API_BODY_H
#define HERALD_API_BODY_H

#include <jansson.h>

#include <herald/proto.h>

#include "api/answer.h"
#include "api/http1.h"

typedef struct api_body {
    const http1_request *req;
    int msgpack;
    json_t *doc;              /* the fields, an object; owned */
} api_body;

/* Parses req's body by its Content-Type: 0, or -1 after answering (415
 * for another media type, 400 for a body that is not one object). */
int api_body_parse(const http1_request *req, api_body *b, api_answer *ans);

/* Refuses (400, naming it) a field not in `fields` (NULL-terminated). */
int api_body_only(const api_body *b, const char *const *fields,
                  api_answer *ans);

/* A string field: 1 with the value (NUL-free, 1..cap-1 bytes copied to
 * out), 0 absent; -1 after answering 400 (another type, empty, too long,
 * a NUL byte). */
int api_body_string(const api_body *b, const char *name, char *out,
                    size_t cap, api_answer *ans);

/* The "data" member in both encodings (d points into *owned, freed by the
 * caller): 0, or -1 after answering 400 (absent, or not representable). */
int api_body_data(const api_body *b, proto_data *d, void **owned,
                  api_answer *ans);

void api_body_free(api_body *b);

#endif
