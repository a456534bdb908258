/*
 * Server API answers (answer.h).
 */
#include "api/answer.h"

#include <stdlib.h>
#include <string.h>

void api_answer_json(api_answer *ans, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        abort();
    ans->status = status;
    ans->content_type = NULL;
    proto_buf_reset(&ans->body);
    proto_buf_append(&ans->body, text, strlen(text));
    free(text);
}

void api_error(api_answer *ans, int status, int code, const char *message)
{
    api_answer_json(ans, status,
                    json_pack("{s:{s:i,s:s}}", "error", "code", code,
                              "message", message));
}
