/*
 * The Content-Type of a static file, from its name's extension (pure
 * logic). Text types say charset=utf-8; an unknown extension is
 * application/octet-stream, which with "X-Content-Type-Options: nosniff"
 * a browser downloads instead of guessing and running it.
 */
#ifndef HERALD_WEB_MIME_H
#define HERALD_WEB_MIME_H

/* name: a file name or path; the extension is matched without case. */
const char *web_mime_type(const char *name);

#endif
