/*
 * The server API's OpenAPI document (docs/openapi.yaml) as compact JSON,
 * served at GET /api/v1/openapi.json. The build generates its definition
 * from the YAML file (scripts/openapi_to_c.py), so the served document is
 * always the one in the tree.
 */
#ifndef HERALD_API_OPENAPI_H
#define HERALD_API_OPENAPI_H

#include <stddef.h>

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;   /* bytes, without the NUL */

#endif
